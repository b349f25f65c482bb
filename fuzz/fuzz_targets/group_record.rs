//! Fuzzes the decoding of `__consumer_offsets` keys and values (group loading).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = weir_broker::fuzzing::decode_group_record(data);
});
