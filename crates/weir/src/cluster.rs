//! `weir cluster`: the controllers and brokers of a cluster (`status`), and how partition
//! leadership is spread over the brokers (`leaders`).

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Subcommand;

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
    }
    Ok(())
}
