//! Path canonicalisation and routing of an anonymous request: `host\npath\nquery\nauthority`.
#![no_main]
use std::sync::OnceLock;

use gatehouse_gateway::fuzzing;
use gatehouse_gateway::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    fuzzing::route(SNAPSHOT.get_or_init(fuzzing::routing_snapshot), data);
});
