//! `Cookie` (and an app's `Set-Cookie`) headers, one value per line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatehouse_gateway::fuzzing::cookies(data));
