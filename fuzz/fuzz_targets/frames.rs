//! Fuzzes a connection's frame reader: bytes arriving in chunks, each whole frame parsed and
//! decoded.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = weir_broker::fuzzing::read_frames(data);
});
