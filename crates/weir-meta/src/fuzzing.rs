//! Entry points for the fuzz targets (`fuzz/`) and the corpus replay test: the code the metadata
//! quorum runs on bytes from the network.

/// Decodes one quorum RPC frame (without its length prefix) as a voter does before acting on it.
/// Must never panic or allocate more than the input allows.
pub fn decode_quorum_rpc(frame: &[u8]) -> bool {
    crate::quorum::network::parse_rpc(frame).is_ok()
}
