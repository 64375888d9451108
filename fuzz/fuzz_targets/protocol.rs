//! Arbitrary bytes, split at an arbitrary point, through tcpchat::fuzzing::protocol; the
//! properties are checked there.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tcpchat::fuzzing::protocol(data));
