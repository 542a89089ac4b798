//! `Host` header and absolute-form authority parsing: `host\nauthority`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatehouse_gateway::fuzzing::host(data));
