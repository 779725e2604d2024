// How to run: scripts/fuzz [SECONDS_PER_TARGET], or from the repo root
// cargo +nightly fuzz run config_load -- -dict=fuzz/dict/config_load.dict
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gatehouse_fuzz::config_load(data);
});
