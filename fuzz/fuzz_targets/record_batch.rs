//! Fuzzes record-batch validation on the produce path.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = weir_broker::fuzzing::validate_record_batches(data);
});
