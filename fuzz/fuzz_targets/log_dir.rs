//! Fuzzes opening a partition directory of random files after a crash, then reading, truncating
//! and closing it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = weir_broker::fuzzing::open_log_dir(data);
});
