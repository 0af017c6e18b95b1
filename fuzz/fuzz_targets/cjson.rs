//! cargo-fuzz target `cjson`: a thin wrapper; the logic is `targets::cjson` in fuzz/targets.rs,
//! which tests/it/fuzz_corpus.rs also runs over the committed corpus on stable.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    targets::cjson(data);
});
