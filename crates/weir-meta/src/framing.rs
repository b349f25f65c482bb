//! The frame both metadata logs use on disk: `length: u32 BE | crc32c: u32 BE | body`.

/// One frame around `body`.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(body.len() + 8);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    buf.extend_from_slice(body);
    buf
}

/// The intact frames at the start of `raw`, each as (byte position, body), and the number of
/// bytes they cover: reading stops at the first torn frame, bad checksum, or length above `max`.
pub(crate) fn intact_frames(raw: &[u8], max: usize) -> (Vec<(usize, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while raw.len() - at >= 8 {
        let len = u32::from_be_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]) as usize;
        let crc = u32::from_be_bytes([raw[at + 4], raw[at + 5], raw[at + 6], raw[at + 7]]);
        if len > max || raw.len() - at - 8 < len {
            break;
        }
        let body = &raw[at + 8..at + 8 + len];
        if crc32c::crc32c(body) != crc {
            break;
        }
        out.push((at, body));
        at += 8 + len;
    }
    (out, at)
}
