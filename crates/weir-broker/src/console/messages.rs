//! Message browsing for the console (`/api/messages`): records of one partition this broker
//! holds, from an offset or from the first record at or after a timestamp, as a
//! `read_committed` consumer sees them: up to the last stable offset, without aborted
//! transactions' records. Runs on a blocking thread: it reads segment files. Bounded: at most
//! [`MAX_READ`] bytes read and [`MAX_DECODED`] decompressed, keys, values and header names cut
//! at [`MAX_SHOWN`] bytes, at most [`MAX_HEADERS`] headers a record.

use bytes::Bytes;
use serde::Serialize;
use weir_types::Offset;

use crate::broker::Broker;

/// Records shown at most in one answer.
pub(crate) const MAX_LIMIT: usize = 200;
/// Bytes of a key or value shown at most (the rest is cut, and said so).
const MAX_SHOWN: usize = 1024;
/// Bytes of the log read at most for one answer.
const MAX_READ: u64 = 4 << 20;
/// Bytes decompressed at most for one answer.
const MAX_DECODED: usize = 8 << 20;
/// Headers shown at most for one record.
const MAX_HEADERS: usize = 16;

/// What to read, from the query string.
#[derive(Debug, PartialEq)]
pub(crate) struct Query {
    topic: String,
    partition: i32,
    from: From,
    limit: usize,
}

#[derive(Debug, PartialEq)]
enum From {
    Offset(i64),
    Timestamp(i64),
}

impl Query {
    /// `topic=T&partition=P&offset=O` or `&timestamp=MS`, with `limit=N` (20 by default).
    pub(crate) fn parse(query: &str) -> Result<Query, String> {
        let mut topic = None;
        let (mut partition, mut offset, mut timestamp, mut limit) = (0, None, None, 20);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what: &str| {
                v.parse::<i64>()
                    .map_err(|_| format!("{what} '{v}' is not a number"))
            };
            match k {
                "topic" => topic = Some(v.to_string()),
                "partition" => {
                    partition = i32::try_from(number("partition")?)
                        .map_err(|_| format!("partition '{v}' is out of range"))?
                }
                "offset" => offset = Some(number("offset")?),
                "timestamp" => timestamp = Some(number("timestamp")?),
                "limit" => limit = usize::try_from(number("limit")?.max(1)).unwrap_or(MAX_LIMIT),
                other => return Err(format!("unknown parameter '{other}'")),
            }
        }
        let from = match (offset, timestamp) {
            (Some(_), Some(_)) => return Err("give an offset or a timestamp, not both".into()),
            (Some(o), None) => From::Offset(o),
            (None, Some(t)) => From::Timestamp(t),
            (None, None) => From::Offset(0),
        };
        Ok(Query {
            topic: topic.ok_or("no topic")?,
            partition,
            from,
            limit: limit.min(MAX_LIMIT),
        })
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Messages {
    /// The offset the records start from (where a timestamp led, or the log start when the
    /// offset asked for is gone).
    from: i64,
    high_watermark: i64,
    /// Where a read_committed consumer stops: records past it are not shown yet.
    last_stable_offset: i64,
    /// Where to read on from (past the last record shown or skipped).
    next: i64,
    records: Vec<Message>,
}

#[derive(Debug, Serialize)]
struct Message {
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
    transactional: bool,
}

fn shown(bytes: &Bytes) -> String {
    let cut = bytes.len() > MAX_SHOWN;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_SHOWN)]).into_owned();
    if cut {
        format!("{text}… ({} bytes)", bytes.len())
    } else {
        text
    }
}

/// Reads the records `query` asks for; `Err` says why not, in one line.
pub(crate) fn read(broker: &Broker, query: &Query) -> Result<Messages, String> {
    let partition = broker
        .replicas
        .get(&query.topic, query.partition)
        .ok_or_else(|| {
            format!(
                "{}-{} is not on this broker: open the console of a broker that holds it",
                query.topic, query.partition
            )
        })?;
    let high_watermark = partition.high_watermark();
    let (from, stable, aborted, slices) = {
        let log = partition.log();
        let stable = log.last_stable_offset(high_watermark);
        let from = match query.from {
            From::Offset(o) => Offset(o.max(log.log_start_offset().0)),
            From::Timestamp(t) => log
                .offset_for_timestamp(t)
                .map_err(|e| format!("cannot search by time: {e}"))?
                .map_or(high_watermark, |found| found.offset),
        };
        if from >= stable {
            (from, stable, Vec::new(), Vec::new())
        } else {
            let info = log
                .read(from, MAX_READ, stable, true)
                .map_err(|e| format!("cannot read: {e}"))?;
            let upper = info.end.unwrap_or(from);
            (
                from,
                stable,
                log.aborted_transactions(from, upper),
                info.slices,
            )
        }
    };
    // The slices hold their files open: read them without the log's lock.
    let mut records = Vec::new();
    let mut next = from.0;
    let mut decoded = 0usize;
    'slices: for slice in slices {
        let bytes = Bytes::from(
            slice
                .read_to_vec()
                .map_err(|e| format!("cannot read: {e}"))?,
        );
        for (at, header) in weir_log::batch::batches_in(&bytes) {
            let producer = header
                .producer()
                .filter(|_| header.is_transactional())
                .map(|(p, _)| p);
            // A batch of an aborted transaction lies between its first offset and its marker.
            let aborted_batch = producer.is_some_and(|p| {
                aborted.iter().any(|a| {
                    a.producer_id == p
                        && a.first_offset.0 <= header.base_offset
                        && header.base_offset <= a.last_offset.0
                })
            });
            if header.is_control() || aborted_batch {
                next = next.max(header.end().0);
                continue;
            }
            let batch = bytes.slice(at..at + header.total_size());
            let budget = MAX_DECODED.saturating_sub(decoded);
            if budget == 0 {
                break 'slices;
            }
            let set = weir_log::decompress::decode_batch(batch, budget).map_err(|e| {
                format!(
                    "cannot decode the batch at offset {}: {e}",
                    header.base_offset
                )
            })?;
            decoded += set
                .records
                .iter()
                .map(|r| {
                    r.value.as_ref().map_or(0, |v| v.len()) + r.key.as_ref().map_or(0, |k| k.len())
                })
                .sum::<usize>();
            for r in set.records {
                if r.offset < from.0 || r.offset >= stable.0 {
                    continue;
                }
                records.push(Message {
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key.as_ref().map(shown),
                    value: r.value.as_ref().map(shown),
                    headers: r
                        .headers
                        .iter()
                        .take(MAX_HEADERS)
                        .map(|(k, v)| (shown(&Bytes::from(k.to_string())), v.as_ref().map(shown)))
                        .collect(),
                    transactional: r.transactional,
                });
                next = r.offset + 1;
                if records.len() >= query.limit {
                    break 'slices;
                }
            }
            next = next.max(header.end().0);
        }
    }
    Ok(Messages {
        from: from.0,
        high_watermark: high_watermark.0,
        last_stable_offset: stable.0,
        next: next.min(stable.0).max(from.0),
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_read_and_bad_ones_refused_in_one_line() {
        assert_eq!(
            Query::parse("topic=a.b&partition=2&offset=10&limit=5"),
            Ok(Query {
                topic: "a.b".into(),
                partition: 2,
                from: From::Offset(10),
                limit: 5
            })
        );
        let q = Query::parse("topic=t&timestamp=1700000000000&limit=100000").unwrap();
        assert_eq!(
            (q.from, q.limit),
            (From::Timestamp(1_700_000_000_000), MAX_LIMIT)
        );
        assert!(Query::parse("partition=1").is_err());
        assert!(Query::parse("topic=t&offset=x").is_err());
        assert!(Query::parse("topic=t&offset=1&timestamp=2").is_err());
        assert!(Query::parse("topic=t&partition=99999999999").is_err());
        assert!(Query::parse("topic=t&color=red").is_err());
    }
}
