//! What a local-account sign-in costs apart from HTTP: verifying the password against its
//! argon2id hash (the default parameters Gatehouse hashes with: 19 MiB, 2 passes). Compare
//! it with "gateway CPU per sign-in" of `benches/load/scale.sh`: the difference is
//! everything else a sign-in does (two HTTP requests, the form, the session written to the
//! store). `cargo bench -p gatehouse-benches --bench signin`.
//!
//! `argon2id_verify_allocating` is the argon2 crate's own `verify_password`, which allocates
//! its 19 MiB afresh each time, beside Gatehouse's verification in kept working memory
//! (`authn::local`): what reusing the memory saves where freed pages go back to the system.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse_gateway::authn::local::{hash_password, verify_password};

fn argon2(c: &mut Criterion) {
    let hash = hash_password("scale harness password 1").expect("hash");
    c.bench_function("argon2id_verify_right_password", |b| {
        b.iter(|| assert!(verify_password(black_box("scale harness password 1"), &hash)))
    });
    c.bench_function("argon2id_verify_wrong_password", |b| {
        b.iter(|| assert!(!verify_password(black_box("not the password"), &hash)))
    });
    c.bench_function("argon2id_verify_allocating", |b| {
        use argon2::PasswordVerifier;
        let parsed = argon2::PasswordHash::new(&hash).expect("a PHC string");
        b.iter(|| {
            let v = argon2::Argon2::default().verify_password(black_box(b"scale harness password 1"), &parsed);
            assert!(v.is_ok())
        })
    });
}

criterion_group! {
    name = signin;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    targets = argon2
}
criterion_main!(signin);
