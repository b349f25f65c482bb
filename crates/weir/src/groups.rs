//! `weir groups`: list, describe (committed offset, log end and lag per partition), reset
//! offsets, delete (like `kafka-consumer-groups.sh`).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use weir_client::OffsetSpec;

use crate::Connect;

#[derive(Debug, Subcommand)]
pub(crate) enum GroupsCommand {
    /// List consumer groups with their state.
    List {
        #[command(flatten)]
        connect: Connect,
    },
    /// Show a group's members and, per partition, committed offset, log end offset and lag.
    Describe {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        group: String,
    },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// The first offset at or after this time, in ms since the epoch.
        #[arg(long, group = "to")]
        to_timestamp: Option<i64>,
        /// Apply the change; without it the plan is only printed.
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group that has no active members.
    Delete {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        group: String,
    },
}

pub(crate) async fn run(cmd: GroupsCommand) -> Result<()> {
    match cmd {
        GroupsCommand::List { connect } => {
            for (group, state, kind) in connect.admin().await?.list_groups().await? {
                println!("{group}\t{state}\t{kind}");
            }
        }
        GroupsCommand::Describe { connect, group } => {
            let admin = connect.admin().await?;
            let description = admin
                .describe_group(&group)
                .await
                .map_err(|e| anyhow!("cannot describe group '{group}': {e}"))?;
            let lag = admin
                .group_lag(&group)
                .await
                .map_err(|e| anyhow!("cannot read offsets of '{group}': {e}"))?;
            if description.state == "Dead" && lag.is_empty() {
                bail!("group '{group}' does not exist");
            }
            let owner: BTreeMap<(String, i32), String> = description
                .members
                .iter()
                .flat_map(|m| {
                    m.assignment
                        .iter()
                        .map(move |tp| (tp.clone(), format!("{} ({})", m.client_id, m.host)))
                })
                .collect();
            let kind = match description.epoch {
                Some(epoch) => format!(
                    "a {} group (assignor {}, epoch {epoch})",
                    description.group_type, description.protocol
                ),
                None => format!("a {} group", description.group_type),
            };
            println!(
                "Group {group} is {} with {} member(s), {kind}.",
                description.state,
                description.members.len()
            );
            println!(
                "{:<24}{:<11}{:<16}{:<16}{:<10}CONSUMER",
                "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
            );
            let mut total = 0;
            for l in &lag {
                total += l.lag;
                let current = if l.committed >= 0 {
                    l.committed.to_string()
                } else {
                    "-".into()
                };
                let who = owner
                    .get(&(l.topic.clone(), l.partition))
                    .cloned()
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<24}{:<11}{:<16}{:<16}{:<10}{}",
                    l.topic, l.partition, current, l.log_end_offset, l.lag, who
                );
            }
            println!("Total lag: {total}");
        }
        GroupsCommand::ResetOffsets {
            connect,
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_timestamp,
            execute,
        } => {
            let admin = connect.admin().await?;
            let description = admin.describe_group(&group).await?;
            if !description.members.is_empty() {
                bail!(
                    "group '{group}' has {} active member(s); stop them first",
                    description.members.len()
                );
            }
            let spec = if to_earliest {
                OffsetSpec::Earliest
            } else if to_latest {
                OffsetSpec::Latest
            } else if let Some(ts) = to_timestamp {
                OffsetSpec::Timestamp(ts)
            } else if to_offset.is_some() {
                OffsetSpec::Earliest
            } else {
                bail!("give one of --to-earliest, --to-latest, --to-offset, --to-timestamp");
            };
            let found = admin
                .list_offsets(&topic, spec)
                .await
                .map_err(|e| anyhow!("cannot read offsets of '{topic}': {e}"))?;
            let ends = admin.list_offsets(&topic, OffsetSpec::Latest).await?;
            let starts = admin.list_offsets(&topic, OffsetSpec::Earliest).await?;
            let mut plan = BTreeMap::new();
            for (p, (o, _)) in found {
                let end = ends.get(&p).map_or(0, |e| e.0);
                let start = starts.get(&p).map_or(0, |s| s.0);
                let target = match to_offset {
                    Some(t) => t.clamp(start, end),
                    None if o < 0 => end,
                    None => o,
                };
                plan.insert((topic.clone(), p), target);
            }
            println!("{:<24}{:<11}NEW-OFFSET", "TOPIC", "PARTITION");
            for ((t, p), o) in &plan {
                println!("{t:<24}{p:<11}{o}");
            }
            if execute {
                admin
                    .set_group_offsets(&group, &plan)
                    .await
                    .map_err(|e| anyhow!("cannot reset offsets of '{group}': {e}"))?;
            } else {
                println!("(dry run: add --execute to apply)");
            }
        }
        GroupsCommand::Delete { connect, group } => {
            connect
                .admin()
                .await?
                .delete_group(&group)
                .await
                .map_err(|e| anyhow!("cannot delete group '{group}': {e}"))?;
            println!("Deleted group {group}.");
        }
    }
    Ok(())
}
