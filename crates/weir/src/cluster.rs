//! `weir cluster`: the controllers and brokers of a cluster (`status`), how partition
//! leadership is spread over the brokers (`leaders`), and leader elections (`elect`, after
//! Kafka's `kafka-leader-election.sh`).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};

use crate::Connect;

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// The controllers with the active one, and every broker with its state.
    Status {
        #[command(flatten)]
        connect: Connect,
    },
    /// How many partitions each broker leads and hosts.
    Leaders {
        #[command(flatten)]
        connect: Connect,
    },
    /// Elects leaders: the preferred replica, or (unclean) any live replica of a partition
    /// that has no leader.
    Elect {
        #[command(flatten)]
        connect: Connect,
        #[arg(long, value_enum)]
        election_type: ElectionType,
        /// The topic whose partitions to elect for (all of them without --partition).
        #[arg(long, conflicts_with = "all_topic_partitions")]
        topic: Option<String>,
        /// One partition of --topic.
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// Every partition of every topic.
        #[arg(long)]
        all_topic_partitions: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ElectionType {
    Preferred,
    Unclean,
}

pub(crate) async fn run(cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Status { connect } => {
            let admin = connect.admin().await?;
            let cluster = admin.describe_cluster().await?;
            let quorum = admin.describe_quorum().await?;
            println!("cluster id: {}", cluster.cluster_id);
            let active = if quorum.leader >= 0 {
                quorum.leader.to_string()
            } else {
                "none".to_string()
            };
            println!(
                "active controller: {active} (metadata epoch {}, high watermark {})",
                quorum.leader_epoch, quorum.high_watermark
            );
            println!("CONTROLLER\tROLE\tLOG END");
            for (id, end) in &quorum.voters {
                let role = if *id == quorum.leader {
                    "active"
                } else {
                    "voter"
                };
                let end = if *end >= 0 {
                    end.to_string()
                } else {
                    "-".to_string()
                };
                println!("{id}\t{role}\t{end}");
            }
            println!("BROKER\tSTATE\tENDPOINT\tRACK");
            for b in &cluster.brokers {
                let state = if b.fenced { "fenced" } else { "live" };
                let rack = b.rack.as_deref().unwrap_or("-");
                println!("{}\t{state}\t{}:{}\t{rack}", b.node_id, b.host, b.port);
            }
        }
        ClusterCommand::Leaders { connect } => {
            let admin = connect.admin().await?;
            let cluster = admin.describe_cluster().await?;
            let mut leads: BTreeMap<i32, (usize, usize)> = cluster
                .brokers
                .iter()
                .map(|b| (b.node_id, (0, 0)))
                .collect();
            let mut offline = 0usize;
            for topic in admin.list_topics().await? {
                for p in &topic.partitions {
                    if p.leader >= 0 && p.error_code == 0 {
                        leads.entry(p.leader).or_default().0 += 1;
                    } else {
                        offline += 1;
                    }
                    for r in &p.replicas {
                        leads.entry(*r).or_default().1 += 1;
                    }
                }
            }
            println!("BROKER\tLEADERS\tREPLICAS");
            for (id, (leaders, replicas)) in leads {
                println!("{id}\t{leaders}\t{replicas}");
            }
            println!("offline partitions: {offline}");
        }
        ClusterCommand::Elect {
            connect,
            election_type,
            topic,
            partition,
            all_topic_partitions,
        } => {
            let admin = connect.admin().await?;
            let partitions = match (topic, partition) {
                (None, _) if !all_topic_partitions => {
                    bail!("give --topic (with or without --partition) or --all-topic-partitions")
                }
                (None, _) => None,
                (Some(t), Some(p)) => Some(vec![(t, p)]),
                (Some(t), None) => {
                    let described = admin.describe_topic(&t).await?;
                    Some(
                        described
                            .partitions
                            .iter()
                            .map(|p| (t.clone(), p.partition))
                            .collect(),
                    )
                }
            };
            let preferred = matches!(election_type, ElectionType::Preferred);
            let results = admin
                .elect_leaders(preferred, partitions.as_deref())
                .await?;
            let mut failed = 0usize;
            for ((t, p), result) in &results {
                match result {
                    Ok(()) => println!("{t}-{p}\telected"),
                    // Kafka's tool does not count these as failures either.
                    Err(weir_client::Error::Kafka {
                        error: weir_client::ResponseError::ElectionNotNeeded,
                        ..
                    }) => println!("{t}-{p}\tno election needed"),
                    Err(e) => {
                        failed += 1;
                        println!("{t}-{p}\t{e}");
                    }
                }
            }
            if results.is_empty() {
                println!("no partition needed an election");
            }
            if failed > 0 {
                bail!("{failed} of {} elections did not happen", results.len());
            }
        }
    }
    Ok(())
}
