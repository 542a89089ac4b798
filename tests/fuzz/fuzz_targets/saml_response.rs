//! A posted SAMLResponse, through decoding, prechecks and samael's signature check.
#![no_main]
use std::sync::OnceLock;

use gatehouse_gateway::fuzzing;
use libfuzzer_sys::fuzz_target;

static SP: OnceLock<fuzzing::SamlTarget> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let sp = SP.get_or_init(|| {
        // The gateway catches samael's panics (`verify_response`); libFuzzer's panic hook
        // would abort on them first. A panic anywhere else still ends the run: libFuzzer
        // aborts on any panic that reaches it.
        std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
        fuzzing::saml_sp(include_str!("../fixtures/idp-metadata.xml"))
    });
    fuzzing::saml_response(sp, data);
});
