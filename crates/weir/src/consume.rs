//! `weir consume`: print records (like `kafka-console-consumer.sh`), as text or JSON lines.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use weir_client::{AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, GroupProtocol};

use crate::{key_value, Connect};

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    connect: Connect,
    #[arg(long)]
    topic: String,
    /// Read as a member of this consumer group (committing offsets).
    #[arg(long)]
    group: Option<String>,
    /// Start at the earliest offset (when the group has no committed offset).
    #[arg(long)]
    from_beginning: bool,
    /// Read only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Start at this offset (needs --partition; no group).
    #[arg(long)]
    offset: Option<i64>,
    /// Start at the first record at or after this time, in ms since the epoch (no group).
    #[arg(long)]
    timestamp: Option<i64>,
    /// Exit after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when no record arrives for this long, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// text or json (one JSON object per line).
    #[arg(long, default_value = "text")]
    format: String,
    /// Kafka console-consumer properties: print.key, print.partition, print.offset,
    /// print.timestamp, print.headers (true/false), key.separator.
    #[arg(long = "property")]
    properties: Vec<String>,
    /// Consumer settings by Kafka's names: partition.assignment.strategy (range, roundrobin,
    /// cooperative-sticky, comma-separated, or the Java class names), session.timeout.ms,
    /// heartbeat.interval.ms, auto.commit.interval.ms, fetch.min.bytes, fetch.max.bytes,
    /// fetch.max.wait.ms, max.partition.fetch.bytes, isolation.level, group.protocol (classic
    /// or consumer, KIP-848), group.remote.assignor (uniform or range, with
    /// group.protocol=consumer).
    #[arg(long = "consumer-property")]
    consumer_properties: Vec<String>,
    /// read_committed reads only committed transactions' records; read_uncommitted (the
    /// default) reads everything written.
    #[arg(long, default_value = "read_uncommitted")]
    isolation_level: String,
}

/// Kafka's `isolation.level`: whether only committed records are read.
pub(crate) fn parse_isolation(level: &str) -> Result<bool> {
    match level {
        "read_committed" => Ok(true),
        "read_uncommitted" => Ok(false),
        other => bail!("isolation level must be read_committed or read_uncommitted, not '{other}'"),
    }
}

/// Applies `--consumer-property key=value` settings.
fn apply_consumer_property(config: &mut ConsumerConfig, prop: &str) -> Result<()> {
    let (k, v) = key_value(prop)?;
    let ms = |v: &str| -> Result<Duration> {
        v.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| anyhow!("{k} must be a number of milliseconds, not '{v}'"))
    };
    let bytes = |v: &str| -> Result<i32> {
        v.parse::<i32>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| anyhow!("{k} must be a number of bytes, not '{v}'"))
    };
    match k.as_str() {
        "partition.assignment.strategy" => {
            config.assignors = v
                .split(',')
                .map(|a| match a.trim().rsplit('.').next().unwrap_or_default() {
                    "RangeAssignor" | "range" => Ok("range".to_string()),
                    "RoundRobinAssignor" | "roundrobin" => Ok("roundrobin".to_string()),
                    "CooperativeStickyAssignor" | "cooperative-sticky" => {
                        Ok("cooperative-sticky".to_string())
                    }
                    other => Err(anyhow!(
                        "unknown assignor '{other}' (range, roundrobin or cooperative-sticky)"
                    )),
                })
                .collect::<Result<Vec<_>>>()?;
        }
        "session.timeout.ms" => config.session_timeout = ms(&v)?,
        "heartbeat.interval.ms" => config.heartbeat_interval = ms(&v)?,
        "auto.commit.interval.ms" => config.auto_commit_interval = ms(&v)?,
        "fetch.max.wait.ms" => config.fetch_max_wait = ms(&v)?,
        "fetch.min.bytes" => config.fetch_min_bytes = bytes(&v)?,
        "fetch.max.bytes" => config.fetch_max_bytes = bytes(&v)?,
        "max.partition.fetch.bytes" => config.max_partition_fetch_bytes = bytes(&v)?,
        "isolation.level" => config.read_committed = parse_isolation(&v)?,
        "group.protocol" => {
            config.group_protocol = match v.to_ascii_lowercase().as_str() {
                "classic" => GroupProtocol::Classic,
                "consumer" => GroupProtocol::Consumer,
                other => bail!("group.protocol must be classic or consumer, not '{other}'"),
            }
        }
        "group.remote.assignor" => config.group_remote_assignor = Some(v.clone()),
        other => bail!("unknown --consumer-property '{other}'"),
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Print {
    key: bool,
    partition: bool,
    offset: bool,
    timestamp: bool,
    headers: bool,
    separator: String,
    json: bool,
}

fn text(b: &Option<bytes::Bytes>) -> String {
    match b {
        None => "null".to_string(),
        Some(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

fn format_record(p: &Print, r: &ConsumerRecord) -> String {
    if p.json {
        let headers: serde_json::Map<String, serde_json::Value> = r
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_ref().map_or(serde_json::Value::Null, |v| {
                        String::from_utf8_lossy(v).into()
                    }),
                )
            })
            .collect();
        let value = serde_json::json!({
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            "value": r.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
            "headers": headers,
        });
        return value.to_string();
    }
    let mut parts = Vec::new();
    if p.timestamp {
        parts.push(format!("CreateTime:{}", r.timestamp));
    }
    if p.partition {
        parts.push(format!("Partition:{}", r.partition));
    }
    if p.offset {
        parts.push(format!("Offset:{}", r.offset));
    }
    if p.headers {
        let h: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}:{}", text(v)))
            .collect();
        parts.push(if h.is_empty() {
            "NO_HEADERS".into()
        } else {
            h.join(",")
        });
    }
    if p.key {
        parts.push(text(&r.key));
    }
    parts.push(text(&r.value));
    parts.join(&p.separator)
}

pub(crate) async fn run(args: ConsumeArgs) -> Result<()> {
    let mut print = Print {
        separator: "\t".into(),
        json: args.format == "json",
        ..Default::default()
    };
    if !matches!(args.format.as_str(), "text" | "json") {
        bail!("--format must be text or json, not '{}'", args.format);
    }
    for prop in &args.properties {
        let (k, v) = key_value(prop)?;
        let on = v == "true";
        match k.as_str() {
            "print.key" => print.key = on,
            "print.partition" => print.partition = on,
            "print.offset" => print.offset = on,
            "print.timestamp" => print.timestamp = on,
            "print.headers" => print.headers = on,
            "key.separator" => print.separator = v,
            other => bail!("unknown --property '{other}'"),
        }
    }
    if args.offset.is_some() && args.partition.is_none() {
        bail!("--offset needs --partition");
    }
    if args.group.is_some() && (args.offset.is_some() || args.timestamp.is_some()) {
        bail!("--offset and --timestamp read without a group; use 'weir groups reset-offsets' for a group");
    }
    let mut config = ConsumerConfig::new(&args.connect.bootstrap_server);
    config.client = args.connect.client()?;
    config.group_id = args.group.clone();
    config.auto_offset_reset = if args.from_beginning {
        AutoOffsetReset::Earliest
    } else {
        AutoOffsetReset::Latest
    };
    config.enable_auto_commit = args.group.is_some();
    config.auto_commit_interval = Duration::from_secs(1);
    config.read_committed = parse_isolation(&args.isolation_level)?;
    for prop in &args.consumer_properties {
        apply_consumer_property(&mut config, prop)?;
    }
    let admin = args.connect.admin().await?;
    let info = admin
        .describe_topic(&args.topic)
        .await
        .map_err(|e| anyhow!("cannot read topic '{}': {e}", args.topic))?;
    let mut consumer = Consumer::new(config)
        .await
        .map_err(|e| anyhow!("cannot reach {}: {e}", args.connect.bootstrap_server))?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if info.partitions.iter().any(|x| x.partition == p) => vec![p],
        Some(p) => bail!("topic '{}' has no partition {p}", args.topic),
        None => info.partitions.iter().map(|p| p.partition).collect(),
    };
    if args.group.is_some() {
        consumer.subscribe(vec![args.topic.clone()]).await?;
    } else {
        consumer
            .assign(
                partitions
                    .iter()
                    .map(|p| (args.topic.clone(), *p))
                    .collect(),
            )
            .await?;
        if let Some(o) = args.offset {
            consumer.seek(&args.topic, partitions[0], o);
        }
        if let Some(ts) = args.timestamp {
            for &p in &partitions {
                let mut o = consumer.offsets_for_time(&args.topic, p, ts).await?;
                if o < 0 {
                    o = consumer.offsets_for_time(&args.topic, p, -1).await?;
                }
                consumer.seek(&args.topic, p, o);
            }
        }
    }
    let mut printed = 0u64;
    let mut last = Instant::now();
    let stdout = std::io::stdout();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if args.max_messages.is_some_and(|m| printed >= m) {
            break;
        }
        if args
            .timeout_ms
            .is_some_and(|t| last.elapsed() >= Duration::from_millis(t))
        {
            break;
        }
        let want = args
            .max_messages
            .map_or(500, |m| (m - printed).min(500) as usize);
        let batch = tokio::select! {
            b = consumer.poll_batch(want, Duration::from_millis(200)) => b?,
            _ = &mut ctrl_c => break,
        };
        if !batch.is_empty() {
            last = Instant::now();
        }
        let mut out = stdout.lock();
        for r in &batch {
            writeln!(out, "{}", format_record(&print, r))
                .map_err(|e| anyhow!("cannot write output: {e}"))?;
            printed += 1;
        }
        out.flush().ok();
    }
    consumer.close().await?;
    eprintln!("Processed a total of {printed} messages");
    Ok(())
}
