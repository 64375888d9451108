//! One client's byte stream through the telnet parser (tcpchat::fuzzing::telnet checks it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tcpchat::fuzzing::telnet(data));
