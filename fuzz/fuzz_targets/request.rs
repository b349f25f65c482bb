//! Fuzzes request framing and decoding: a frame body (without size prefix) from the wire.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = weir_broker::fuzzing::decode_request(data);
});
