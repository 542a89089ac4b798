//! The TOML configuration file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatehouse_gateway::fuzzing::config(data));
