//! Arbitrary bytes through tcpchat::fuzzing::wire; the properties are checked there.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tcpchat::fuzzing::wire(data));
