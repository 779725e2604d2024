// How to run: scripts/fuzz [SECONDS_PER_TARGET], or from the repo root
// cargo +nightly fuzz run forward_headers -- -dict=fuzz/dict/forward_headers.dict
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_fuzz::forward_headers(data));
