// How to run: scripts/fuzz [SECONDS_PER_TARGET], or from the repo root
// cargo +nightly fuzz run upstream_response -- -dict=fuzz/dict/upstream_response.dict
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_fuzz::upstream_response(data));
