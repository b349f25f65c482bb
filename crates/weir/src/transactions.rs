//! `weir transactions`: inspect transactions and abort a hanging one, after
//! `kafka-transactions.sh` (`list`, `describe --transactional-id`, `describe-producers --topic
//! --partition`, `abort --topic --partition --start-offset` or `--producer-id
//! --producer-epoch --coordinator-epoch`).

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use weir_client::ProducerState;

use crate::Connect;

#[derive(Debug, Subcommand)]
pub(crate) enum TransactionsCommand {
    /// Every transactional id, with its producer id, state and coordinator.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// One transactional id's state at its coordinator.
    Describe {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        transactional_id: String,
    },
    /// The producers a partition's leader knows, with their open transactions.
    DescribeProducers {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
    },
    /// Abort a hanging transaction in one partition: the producer whose open transaction starts
    /// at --start-offset, or the one given by --producer-id, --producer-epoch and
    /// --coordinator-epoch.
    Abort {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: i32,
        #[arg(long)]
        start_offset: Option<i64>,
        #[arg(long)]
        producer_id: Option<i64>,
        #[arg(long)]
        producer_epoch: Option<i32>,
        #[arg(long)]
        coordinator_epoch: Option<i32>,
    },
}

pub(crate) async fn run(cmd: TransactionsCommand) -> Result<()> {
    match cmd {
        TransactionsCommand::List { connect } => {
            let listed = connect
                .admin()
                .await?
                .list_transactions()
                .await
                .map_err(|e| anyhow!("cannot list transactions: {e}"))?;
            println!("TransactionalId\tCoordinator\tProducerId\tTransactionState");
            for t in listed {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.transactional_id, t.coordinator, t.producer_id, t.state
                );
            }
        }
        TransactionsCommand::Describe {
            connect,
            transactional_id,
        } => {
            let t = connect
                .admin()
                .await?
                .describe_transaction(&transactional_id)
                .await
                .map_err(|e| anyhow!("cannot describe '{transactional_id}': {e}"))?;
            let partitions: Vec<String> = t
                .partitions
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect();
            println!("TransactionalId\tProducerId\tProducerEpoch\tTransactionState\tTransactionTimeoutMs\tTransactionStartTimeMs\tTopicPartitions");
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                t.transactional_id,
                t.producer_id,
                t.producer_epoch,
                t.state,
                t.timeout_ms,
                t.start_time_ms,
                partitions.join(",")
            );
        }
        TransactionsCommand::DescribeProducers {
            connect,
            topic,
            partition,
        } => {
            let producers = connect
                .admin()
                .await?
                .describe_producers(&topic, partition)
                .await
                .map_err(|e| {
                    anyhow!("cannot describe the producers of {topic}-{partition}: {e}")
                })?;
            println!("ProducerId\tProducerEpoch\tLatestCoordinatorEpoch\tLastSequence\tLastTimestamp\tCurrentTransactionStartOffset");
            for p in producers {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    p.producer_id,
                    p.producer_epoch,
                    p.coordinator_epoch,
                    p.last_sequence,
                    p.last_timestamp,
                    p.current_txn_start_offset
                        .map_or("None".to_string(), |o| o.to_string())
                );
            }
        }
        TransactionsCommand::Abort {
            connect,
            topic,
            partition,
            start_offset,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => {
            let admin = connect.admin().await?;
            let producer = match (start_offset, producer_id, producer_epoch, coordinator_epoch) {
                (Some(offset), None, None, None) => admin
                    .describe_producers(&topic, partition)
                    .await
                    .map_err(|e| anyhow!("cannot describe the producers of {topic}-{partition}: {e}"))?
                    .into_iter()
                    .find(|p| p.current_txn_start_offset == Some(offset))
                    .ok_or_else(|| {
                        anyhow!("no open transaction starts at offset {offset} of {topic}-{partition}")
                    })?,
                (None, Some(id), Some(epoch), Some(coordinator)) => ProducerState {
                    producer_id: id,
                    producer_epoch: epoch,
                    last_sequence: -1,
                    last_timestamp: -1,
                    coordinator_epoch: coordinator,
                    current_txn_start_offset: None,
                },
                _ => bail!(
                    "give either --start-offset, or --producer-id, --producer-epoch and --coordinator-epoch"
                ),
            };
            admin
                .abort_transaction(&topic, partition, &producer)
                .await
                .map_err(|e| {
                    anyhow!(
                        "cannot abort the transaction of producer {}: {e}",
                        producer.producer_id
                    )
                })?;
            println!(
                "Aborted the transaction of producer {} (epoch {}) in {topic}-{partition}.",
                producer.producer_id, producer.producer_epoch
            );
        }
    }
    Ok(())
}
