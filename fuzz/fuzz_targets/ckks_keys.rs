//! libFuzzer entry point for [`veil_fuzz::ckks_keys`] (`cargo fuzz run ckks_keys`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::ckks_keys::run(data));
