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

/// Feeds `data` to a connection's frame reader in chunks (their sizes taken from the first
/// byte), then parses and decodes every whole frame, as a connection does. Returns how many
/// frames decoded. Must never panic, and never hold more than the input and one frame's limit.
pub fn read_frames(data: &[u8]) -> usize {
    let Some((&chunk, rest)) = data.split_first() else {
        return 0;
    };
    let chunk = usize::from(chunk).max(1);
    let mut reader = frame::FrameReader::new(64 * 1024);
    let mut decoded = 0;
    for piece in rest.chunks(chunk) {
        reader.push(piece);
        loop {
            match reader.take() {
                Ok(Some(bytes)) => decoded += usize::from(decode_request(&bytes)),
                Ok(None) => break,
                Err(_) => return decoded,
            }
        }
    }
    decoded
}

/// Decodes a record of `__consumer_offsets` as group loading does: the first byte says how
/// much of the rest is the key, the remainder is the value. Must never panic.
pub fn decode_group_record(data: &[u8]) -> bool {
    let Some((&split, rest)) = data.split_first() else {
        return false;
    };
    let split = usize::from(split).min(rest.len());
    let (key, value) = rest.split_at(split);
    let Some(key) = crate::group::records::decode_key(Bytes::copy_from_slice(key)) else {
        return false;
    };
    let value = Bytes::copy_from_slice(value);
    match key {
        crate::group::records::Key::Offset { .. } => {
            crate::group::records::decode_offset_value(value).is_some()
        }
        crate::group::records::Key::Group { .. } => {
            crate::group::records::decode_group_value(value).is_some()
        }
        crate::group::records::Key::ConsumerGroup { .. } => {
            crate::group::coordinator::consumer::ConsumerGroup::decode(&value, 0).is_some()
        }
    }
}

/// Lays out a partition directory from `data` (a file count, then per file a kind byte, a base
/// offset byte and a length-prefixed body: segment, offset index, time index, leader-epoch
/// checkpoint or log-start-offset file) on a simulated disk, opens it as a log after a crash,
/// reads and truncates it, cuts the power (what survives of the unsynced writes follows the last
/// byte), and opens, reads and closes it again. Must never panic: a directory of random bytes is
/// recovered or refused with an error.
pub fn open_log_dir(data: &[u8]) -> bool {
    use weir_log::simfs::PowerLoss;
    let disk = weir_log::SimDisk::new(u64::from(data.last().copied().unwrap_or(0)));
    let dir = std::path::Path::new("/p-0");
    let opened = exercise_log_dir(&disk.storage(), dir, data).unwrap_or(false);
    if !opened {
        return false;
    }
    disk.power_loss(match data.last().copied().unwrap_or(0) % 3 {
        0 => PowerLoss::DropUnsynced,
        1 => PowerLoss::TornTail,
        _ => PowerLoss::Scrambled,
    });
    let Ok(log) = weir_log::Log::open_on(disk.storage(), dir, weir_log::LogConfig::default())
    else {
        return false;
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let _ = log.read(start, 1 << 20, end, true);
    let _ = log.close();
    true
}

/// [`open_log_dir`] on the real file system (a temporary directory), without the power cut.
pub fn open_log_dir_on_disk(data: &[u8]) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let opened = exercise_log_dir(&weir_log::Disk::shared(), &dir, data).unwrap_or(false);
    let _ = std::fs::remove_dir_all(&dir);
    opened
}

fn exercise_log_dir(
    storage: &std::sync::Arc<dyn weir_log::Storage>,
    dir: &std::path::Path,
    data: &[u8],
) -> std::io::Result<bool> {
    use weir_log::storage::OpenMode;
    storage.create_dir_all(dir)?;
    let mut at = 0usize;
    let files = usize::from(*data.first().unwrap_or(&0) % 8);
    at += 1;
    for _ in 0..files {
        let Some(&[kind, base, hi, lo]) = data.get(at..at + 4) else {
            break;
        };
        at += 4;
        let len = (usize::from(hi) << 8 | usize::from(lo)).min(data.len().saturating_sub(at));
        let body = &data[at..at + len];
        at += len;
        let stem = format!("{:020}", u64::from(base) * 10);
        let name = match kind % 5 {
            0 => format!("{stem}.log"),
            1 => format!("{stem}.index"),
            2 => format!("{stem}.timeindex"),
            3 => "leader-epoch-checkpoint".to_string(),
            _ => "log-start-offset".to_string(),
        };
        let file = storage.open(&dir.join(name), OpenMode::Truncate)?;
        file.write_all_at(body, 0)?;
        file.sync_data()?;
    }
    storage.sync_dir(dir)?;
    if let Some(parent) = dir.parent() {
        storage.sync_dir(parent)?;
    }
    let Ok(mut log) = weir_log::Log::open_on(storage.clone(), dir, weir_log::LogConfig::default())
    else {
        return Ok(false);
    };
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let _ = log.read(start, 1 << 20, end, true);
    let _ = log.offset_for_timestamp(0);
    let _ = log.truncate_to(start.plus(end.since(start) / 2));
    let _ = log.close();
    Ok(true)
}
