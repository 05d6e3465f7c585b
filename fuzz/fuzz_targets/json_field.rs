#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hookgate_fuzz::targets::json_field(data));
