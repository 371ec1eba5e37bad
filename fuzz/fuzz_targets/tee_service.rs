//! libFuzzer entry point for [`veil_fuzz::tee_service`] (`cargo fuzz run tee_service`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::tee_service::run(data));
