//! libFuzzer entry point for [`veil_fuzz::tee_evidence`] (`cargo fuzz run tee_evidence`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::tee_evidence::run(data));
