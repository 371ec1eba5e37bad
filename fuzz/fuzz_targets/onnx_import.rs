//! libFuzzer entry point for [`veil_fuzz::onnx_import`] (`cargo fuzz run onnx_import`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::onnx_import::run(data));
