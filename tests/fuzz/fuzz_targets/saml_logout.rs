//! The query of a SAML logout message (HTTP-Redirect binding).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gatehouse_gateway::fuzzing::saml_logout(data));
