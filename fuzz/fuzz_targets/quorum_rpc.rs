//! Fuzzes the decoding of the metadata quorum's RPC frames (what a voter reads from a peer).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = weir_meta::fuzzing::decode_quorum_rpc(data);
});
