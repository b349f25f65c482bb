//! `weir produce`: records from standard input or a file, one per line (like
//! `kafka-console-producer.sh`).

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::Args;
use weir_client::partitioner::{
    DefaultPartitioner, KeyHashPartitioner, Partitioner, RandomPartitioner, RoundRobinPartitioner,
};
use weir_client::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};

use crate::{key_value, Connect};

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    connect: Connect,
    #[arg(long)]
    topic: String,
    /// Read lines from this file instead of standard input.
    #[arg(long)]
    file: Option<std::path::PathBuf>,
    /// Split each line into key and value at this separator (`parse.key=true` is implied).
    #[arg(long)]
    key_separator: Option<String>,
    /// Kafka console-producer properties: parse.key=true, key.separator=X.
    #[arg(long = "property")]
    properties: Vec<String>,
    /// A header added to every record, as key=value; repeat for more.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Send every record to this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// default (murmur2 for keys, sticky without), murmur2, roundrobin, random.
    #[arg(long, default_value = "default")]
    partitioner: String,
    /// all (or -1), 1, 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    #[arg(long, default_value_t = 16384)]
    batch_size: usize,
    /// Kafka producer settings as key=value, applied after the flags above: acks, linger.ms,
    /// batch.size, buffer.memory, compression.type, enable.idempotence,
    /// max.in.flight.requests.per.connection, delivery.timeout.ms.
    #[arg(long = "producer-property")]
    producer_properties: Vec<String>,
}

pub(crate) fn parse_acks(s: &str) -> Result<Acks> {
    Ok(match s {
        "all" | "-1" => Acks::All,
        "1" => Acks::Leader,
        "0" => Acks::None,
        other => bail!("--acks must be all, 1 or 0, not '{other}'"),
    })
}

/// Applies Kafka producer settings given as `key=value` (from the option `flag`, named in
/// errors), after the command's own flags. Idempotence follows acks (on with acks=all, as in
/// Kafka) unless `enable.idempotence` is given; given as true with other acks, the producer
/// refuses to start, as Kafka's does.
pub(crate) fn apply_producer_properties(
    config: &mut ProducerConfig,
    props: &[String],
    flag: &str,
) -> Result<()> {
    let mut idempotence = None;
    for prop in props {
        apply_one(config, prop, &mut idempotence).map_err(|e| anyhow!("{flag} {prop}: {e}"))?;
    }
    config.idempotence = idempotence.unwrap_or(config.acks == Acks::All);
    Ok(())
}

fn apply_one(
    config: &mut ProducerConfig,
    prop: &str,
    idempotence: &mut Option<bool>,
) -> Result<()> {
    let (k, v) = key_value(prop)?;
    let number = |v: &str| -> Result<usize> {
        v.parse::<usize>()
            .map_err(|_| anyhow!("{k} must be a whole number, not '{v}'"))
    };
    let ms = |v: &str| number(v).map(|n| Duration::from_millis(n as u64));
    match k.as_str() {
        "acks" => config.acks = parse_acks(&v)?,
        "linger.ms" => config.linger = ms(&v)?,
        "batch.size" => config.batch_size = number(&v)?,
        "buffer.memory" => config.buffer_memory = number(&v)?,
        "compression.type" => config.compression = parse_compression(&v)?,
        "enable.idempotence" => {
            *idempotence = Some(match v.as_str() {
                "true" => true,
                "false" => false,
                other => bail!("enable.idempotence must be true or false, not '{other}'"),
            })
        }
        "max.in.flight.requests.per.connection" => config.max_in_flight = number(&v)?,
        "delivery.timeout.ms" => config.delivery_timeout = ms(&v)?,
        // Kafka's perf test always passes it; the same as --bootstrap-server.
        "bootstrap.servers" => {
            config.client.bootstrap_servers = v.split(',').map(|s| s.trim().to_string()).collect()
        }
        other => bail!("unknown producer property '{other}'"),
    }
    Ok(())
}

/// Why a producer did not start: its settings (one line naming them) or the cluster.
pub(crate) fn start_failure(bootstrap: &str, e: weir_client::Error) -> anyhow::Error {
    match e {
        weir_client::Error::Config(why) => anyhow!("invalid producer settings: {why}"),
        other => anyhow!("cannot reach {bootstrap}: {other}"),
    }
}

pub(crate) fn parse_compression(s: &str) -> Result<Compression> {
    Ok(match s {
        "none" | "uncompressed" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => bail!("--compression must be none, gzip, snappy, lz4 or zstd, not '{other}'"),
    })
}

pub(crate) fn parse_partitioner(s: &str) -> Result<Arc<dyn Partitioner>> {
    Ok(match s {
        "default" | "sticky" => Arc::new(DefaultPartitioner::default()),
        "murmur2" | "hash" => Arc::new(KeyHashPartitioner),
        "roundrobin" | "round-robin" => Arc::new(RoundRobinPartitioner::default()),
        "random" => Arc::new(RandomPartitioner),
        other => {
            bail!("--partitioner must be default, murmur2, roundrobin or random, not '{other}'")
        }
    })
}

pub(crate) async fn run(args: ProduceArgs) -> Result<()> {
    let mut separator = args.key_separator.clone();
    for p in &args.properties {
        let (k, v) = key_value(p)?;
        match k.as_str() {
            "parse.key" if v == "true" => separator = separator.or_else(|| Some("\t".into())),
            "parse.key" => separator = None,
            "key.separator" => separator = Some(v),
            other => bail!("unknown --property '{other}' (known: parse.key, key.separator)"),
        }
    }
    let headers = args
        .headers
        .iter()
        .map(|h| key_value(h))
        .collect::<Result<Vec<_>>>()?;
    let mut config = ProducerConfig::new(&args.connect.bootstrap_server);
    config.client = args.connect.client()?;
    // A producer retries until its delivery timeout, as Kafka's.
    config.client.retries = u32::MAX;
    config.acks = parse_acks(&args.acks)?;
    config.idempotence = config.acks == Acks::All;
    config.compression = parse_compression(&args.compression)?;
    config.partitioner = parse_partitioner(&args.partitioner)?;
    config.linger = Duration::from_millis(args.linger_ms);
    config.batch_size = args.batch_size;
    apply_producer_properties(
        &mut config,
        &args.producer_properties,
        "--producer-property",
    )?;
    let producer = Producer::new(config)
        .await
        .map_err(|e| start_failure(&args.connect.bootstrap_server, e))?;
    let reader: Box<dyn BufRead + Send> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let mut pending = Vec::new();
    let mut sent = 0u64;
    for line in reader.lines() {
        let line = line.map_err(|e| anyhow!("cannot read input: {e}"))?;
        let (key, value) = match &separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => bail!("line {} has no key separator '{sep}': {line}", sent + 1),
            },
            None => (None, line),
        };
        let mut record = ProducerRecord::new(args.topic.clone(), value);
        if let Some(k) = key {
            record = record.with_key(k);
        }
        if let Some(p) = args.partition {
            record = record.with_partition(p);
        }
        for (k, v) in &headers {
            record = record.with_header(k.clone(), Some(bytes::Bytes::from(v.clone())));
        }
        pending.push(
            producer
                .send(record)
                .await
                .map_err(|e| anyhow!("cannot produce to '{}': {e}", args.topic))?,
        );
        sent += 1;
        if pending.len() >= 10_000 {
            for f in pending.drain(..) {
                f.await
                    .map_err(|e| anyhow!("a record was not delivered: {e}"))?;
            }
        }
    }
    for f in pending {
        f.await
            .map_err(|e| anyhow!("a record was not delivered: {e}"))?;
    }
    producer.close().await;
    eprintln!("Produced {sent} records to {}.", args.topic);
    Ok(())
}
