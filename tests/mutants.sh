#!/usr/bin/env bash
# Mutation testing of Gatehouse's security-critical code with cargo-mutants: every mutant
# (a deliberately broken copy of one function or operator) must make a test fail. The
# survivors that cannot be killed are explained in tests/MUTANTS.md and excluded by name in
# .cargo/mutants.toml; any other surviving mutant fails the run (exit 2) and is listed in
# "$out/mutants.out/missed.txt".
#
#   tests/mutants.sh quick   the bounded subset tests/run-all.sh runs (about 2 minutes on 2
#                            cores once built): gatehouse-policy — evaluate, why, who_can_open,
#                            user names, app owners — with its unit tests
#   tests/mutants.sh authn   the sign-in and session code unit tests can judge (SAML, OIDC,
#                            LDAP helpers, the session service; ~190 mutants, ~30 min)
#   tests/mutants.sh full    also admin-ui redirect.rs and csrf.rs, gateway route.rs,
#                            identity.rs and forwarded.rs, each with its crate's unit tests,
#                            and `authn` (hours on 2 cores: every gateway mutant relinks)
#   tests/mutants.sh -f gateway/src/route.rs -p gatehouse-gateway -- --lib
#                            anything else: the arguments go to `cargo mutants` as they are
#
# cargo-mutants copies the tree (without git-ignored files) to a temporary folder and builds
# the mutants there one at a time, into "${CARGO_TARGET_DIR:-target}/mutants", so the
# project's own build is left alone (the first run builds the dependencies there once).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tests/peers/mutants.sh
target="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TARGET_DIR="$target/mutants"
out="$target/mutants-out"
common=(--jobs 1 --timeout 120 --build-timeout 900 --gitignore true --output "$out")

run() {
  echo "==> cargo mutants $*"
  cargo mutants "${common[@]}" "$@"
}

# The sign-in and session code that unit tests can judge: SAML message reading and
# checks, OIDC admission and claims, LDAP DN handling and group naming, and the session
# service (timeouts, cache freshness, revocation, the store-outage grace) against a real
# SQLite store. Their network halves (talking to the IdP, the OP, the directory) are judged
# by the end-to-end suites instead (see tests/MUTANTS.md).
authn() {
  run -p gatehouse-gateway -f gateway/src/authn/saml.rs -f gateway/src/authn/oidc.rs \
    -f gateway/src/authn/ldap.rs -f gateway/src/authn/session.rs \
    -f gateway/src/authn/session_table.rs -f gateway/src/authn/local.rs \
    -F ' in (algorithm|element_names|root_attribute|precheck|decode_response|inflate|form_decode|parse_redirect_query|RedirectQuery.*|cert_not_after|Email::.*|admit|claim_at|groups_of|payload|not_yet_valid|first_rdn_value|hex_value|domain_root|parent_dn|names_of_groups|hash_id|well_formed|group_names|next_retry_wait|Session::.*|Sessions::.*|Shared::.*|IdHash::.*|SessionTable::.*|hash_of|shard_of|WorkMemory::.*|hashing_turns)$' \
    -- --lib
}

case "${1:-quick}" in
  quick)
    run -p gatehouse-policy
    ;;
  authn)
    authn
    ;;
  full)
    run -p gatehouse-policy
    run -p gatehouse-admin-ui -f admin-ui/src/redirect.rs -f admin-ui/src/csrf.rs -- --lib
    run -p gatehouse-gateway -f gateway/src/route.rs -f gateway/src/identity.rs \
      -f gateway/src/forwarded.rs -- --lib
    authn
    ;;
  *)
    run "$@"
    ;;
esac
