//! libFuzzer entry point for [`veil_fuzz::dp_sql_query`] (`cargo fuzz run dp_sql_query`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veil_fuzz::dp_sql_query::run(data));
