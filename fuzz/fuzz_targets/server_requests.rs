// How to run: scripts/fuzz [SECONDS_PER_TARGET], or from the repo root
// cargo +nightly fuzz run server_requests -- -dict=fuzz/dict/server_requests.dict
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_fuzz::server_requests(data));
