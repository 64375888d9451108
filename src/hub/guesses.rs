//! `/op` password guessing, slowed per address: after a wrong password every connection
//! from that address waits, so opening more connections guesses no faster.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The wait after a first wrong password; each further one doubles it.
pub(super) const FIRST_WAIT: Duration = Duration::from_secs(3);
/// The longest wait: long enough that guessing is hopeless (20 guesses an hour), short
/// enough that a teacher who mistyped a few times is not locked out of the lesson.
const LONGEST_WAIT: Duration = Duration::from_secs(180);
/// An address that has not failed for this long starts again from [`FIRST_WAIT`].
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most: when full, the forgotten ones go, and if none is, the one
/// that failed longest ago. Bounds the table whatever a LAN full of addresses does.
const MOST_ADDRESSES: usize = 1024;

/// Wrong passwords per address.
#[derive(Default)]
pub(super) struct Guesses {
    by_address: HashMap<IpAddr, Failures>,
}

struct Failures {
    count: u32,
    last: Instant,
    wait_until: Instant,
}

impl Guesses {
    /// How long `address` must still wait before it may try, if at all.
    pub(super) fn wait_left(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.by_address.get(&address.to_canonical())?;
        let left = failures.wait_until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }

    /// A wrong password from `address`: it waits, longer each time; returns how long.
    pub(super) fn failed(&mut self, address: IpAddr, now: Instant) -> Duration {
        let address = address.to_canonical();
        if self.by_address.len() >= MOST_ADDRESSES && !self.by_address.contains_key(&address) {
            self.make_room(now);
        }
        let failures = self.by_address.entry(address).or_insert(Failures {
            count: 0,
            last: now,
            wait_until: now,
        });
        if now.saturating_duration_since(failures.last) >= FORGET_AFTER {
            failures.count = 0;
        }
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        let doublings = (failures.count - 1).min(16);
        let wait = FIRST_WAIT.saturating_mul(1 << doublings).min(LONGEST_WAIT);
        failures.wait_until = now + wait;
        wait
    }

    fn make_room(&mut self, now: Instant) {
        self.by_address
            .retain(|_, failures| now.saturating_duration_since(failures.last) < FORGET_AFTER);
        if self.by_address.len() < MOST_ADDRESSES {
            return;
        }
        let oldest = self
            .by_address
            .iter()
            .min_by_key(|(_, failures)| failures.last)
            .map(|(&address, _)| address);
        if let Some(oldest) = oldest {
            self.by_address.remove(&oldest);
        }
    }

    /// The right password from `address`: its failures are forgotten.
    pub(super) fn succeeded(&mut self, address: IpAddr) {
        self.by_address.remove(&address.to_canonical());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_per_address_and_grows_while_it_keeps_failing() {
        let mut guesses = Guesses::default();
        let start = Instant::now();
        let student: IpAddr = "10.0.0.7".parse().expect("ip");
        let teacher: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(guesses.failed(student, start), FIRST_WAIT);
        assert!(guesses.wait_left(student, start).is_some());
        assert_eq!(guesses.wait_left(teacher, start), None);
        let later = start + FIRST_WAIT;
        assert_eq!(guesses.wait_left(student, later), None);
        assert_eq!(guesses.failed(student, later), FIRST_WAIT * 2);
        assert_eq!(guesses.failed(student, later), FIRST_WAIT * 4);
        for _ in 0..40 {
            guesses.failed(student, later);
        }
        assert_eq!(guesses.wait_left(student, later), Some(LONGEST_WAIT));
        // The same address written as IPv4-mapped IPv6 is the same address.
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        assert!(guesses.wait_left(mapped, later).is_some());
        // Long quiet: it starts again from the first wait.
        let much_later = later + FORGET_AFTER + LONGEST_WAIT;
        assert_eq!(guesses.failed(student, much_later), FIRST_WAIT);
        guesses.succeeded(student);
        assert_eq!(guesses.wait_left(student, much_later), None);
    }

    #[test]
    fn the_table_stays_bounded_whatever_addresses_fail() {
        let mut guesses = Guesses::default();
        let start = Instant::now();
        for n in 0..3 * MOST_ADDRESSES as u32 {
            let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            guesses.failed(address, start + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(guesses.by_address.len(), MOST_ADDRESSES);
        // The newest failures are the ones kept.
        let newest = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + 3 * 1024 - 1));
        assert!(guesses.by_address.contains_key(&newest));
    }
}
