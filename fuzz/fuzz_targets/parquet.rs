#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mass_node::fuzz::uploads::parquet(data));
