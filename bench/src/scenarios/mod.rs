//! The scenarios, one module each; main.rs picks one by name and gives it its size.
//!
//! Read fanout.rs and latency.rs first: they show the two ways lines are sent, as fast as
//! a window of unacknowledged lines allows (windowed.rs) or at a fixed pace (paced.rs),
//! to a fleet of clients that all read (../fleet.rs). capacity.rs, churn.rs and stall.rs
//! each test one way a server can fail its clients; big_room.rs puts the paced senders
//! and the churn together in one large room.

pub mod big_room;
pub mod capacity;
pub mod churn;
pub mod fanout;
pub mod latency;
pub mod stall;

mod paced;
mod windowed;

/// `got / expected`, NaN (null in the JSON) when nothing was expected.
fn ratio(got: u64, expected: u64) -> f64 {
    if expected == 0 {
        f64::NAN
    } else {
        got as f64 / expected as f64
    }
}
