//! libFuzzer entry point for [`veil_fuzz::ckks_ciphertext`] (`cargo fuzz run ckks_ciphertext`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::ckks_ciphertext::run(data));
