//! libFuzzer entry point for [`veil_fuzz::mpc_messages`] (`cargo fuzz run mpc_messages`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::mpc_messages::run(data));
