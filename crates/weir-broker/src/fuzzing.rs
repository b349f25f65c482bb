//! Entry points shared by the fuzz targets (`fuzz/`) and the corpus replay test, so that both
//! exercise exactly the code a connection runs on untrusted bytes.

use bytes::Bytes;

use crate::apis;
use crate::frame;

/// Parses a request frame (without its size prefix) and decodes its body, as a connection does.
/// Must never panic or allocate more than the input's size allows.
pub fn decode_request(data: &[u8]) -> bool {
    let Ok(mut request) = frame::parse_request(Bytes::copy_from_slice(data)) else {
        return false;
    };
    apis::decode(
        request.api,
        request.header.request_api_version,
        &mut request.body,
    )
    .is_ok()
}

/// Validates record batches as the produce path does. Must never panic.
pub fn validate_record_batches(data: &[u8]) -> bool {
    weir_log::batch::validate_batches(data).is_ok()
}
