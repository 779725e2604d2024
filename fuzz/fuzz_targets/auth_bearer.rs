// How to run: scripts/fuzz [SECONDS_PER_TARGET], or from the repo root
// cargo +nightly fuzz run auth_bearer -- -dict=fuzz/dict/auth_bearer.dict
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gatehouse_fuzz::auth_bearer(data);
});
