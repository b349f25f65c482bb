//! Entry points shared by the fuzz targets (`fuzz/`) and the corpus replay test, so that both
//! exercise exactly the code a connection runs on untrusted bytes.

use bytes::Bytes;
use kafka_protocol::messages::RequestKind;

use crate::apis;
use crate::frame;

/// Parses a request frame (without its size prefix) and decodes its body, as a connection does.
/// Must never panic or allocate more than the input's size allows.
pub fn decode_request(data: &[u8]) -> bool {
    use kafka_protocol::messages::ApiKey;
    let Ok(request) = frame::parse_request(Bytes::copy_from_slice(data)) else {
        return false;
    };
    let version = request.header.request_api_version;
    let Some(spec) = apis::spec(request.api) else {
        return false;
    };
    // Produce v0-v2 are advertised but refused before decoding, as the connection does.
    let min = if request.api == ApiKey::Produce {
        apis::PRODUCE_MIN_DECODABLE
    } else {
        spec.min
    };
    if version < min || version > spec.max {
        return false;
    }
    let mut body = request.body;
    if request.api == ApiKey::OffsetCommit && version < apis::OFFSET_COMMIT_MIN_DECODABLE {
        return crate::handlers::offset_commit::decode_legacy(&mut body, version).is_ok();
    }
    RequestKind::decode(request.api, &mut body, version).is_ok()
}

/// Validates record batches as the produce path does. Must never panic.
pub fn validate_record_batches(data: &[u8]) -> bool {
    weir_log::batch::validate_batches(data).is_ok()
}
