//! Time since a run's epoch, in the nanoseconds markers carry.

use std::thread;
use std::time::Instant;

pub fn nanos_since(epoch: &Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

pub fn nanos_between(later: &Instant, epoch: &Instant) -> u64 {
    later.saturating_duration_since(*epoch).as_nanos() as u64
}

pub fn sleep_until(moment: Instant) {
    let now = Instant::now();
    if moment > now {
        thread::sleep(moment - now);
    }
}
