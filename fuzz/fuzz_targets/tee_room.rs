//! libFuzzer entry point for [`veil_fuzz::tee_room`] (`cargo fuzz run tee_room`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::tee_room::run(data));
