//! `weir topics`: create, list, describe, alter, delete (like `kafka-topics.sh`).

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use weir_client::NewTopic;

use crate::{key_value, Connect};

#[derive(Debug, Subcommand)]
pub(crate) enum TopicsCommand {
    /// Create a topic.
    Create {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        topic: String,
        /// Number of partitions [default: the broker's num.partitions].
        #[arg(long)]
        partitions: Option<i32>,
        /// Replicas per partition [default: the broker's default.replication.factor].
        #[arg(long)]
        replication_factor: Option<i16>,
        /// Topic config, as key=value; repeat for more.
        #[arg(long = "config")]
        configs: Vec<String>,
        /// Succeed when the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topic names.
    List {
        #[command(flatten)]
        connect: Connect,
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        include_internal: bool,
    },
    /// Show partitions with leader, replicas and ISR, and the topic's configs.
    Describe {
        #[command(flatten)]
        connect: Connect,
        /// The topic [default: every topic].
        #[arg(long)]
        topic: Option<String>,
    },
    /// Add partitions or change configs.
    Alter {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        topic: String,
        /// New total number of partitions (only grows).
        #[arg(long)]
        partitions: Option<i32>,
        /// Set a config, as key=value.
        #[arg(long = "config")]
        configs: Vec<String>,
        /// Reset a config to its default.
        #[arg(long = "delete-config")]
        delete_configs: Vec<String>,
    },
    /// How many partitions a topic needs: max(produce rate / one partition's write rate,
    /// produce rate / one consumer's read rate) plus headroom, with the rates measured on the
    /// cluster unless given.
    Advise(crate::advise::AdviseArgs),
    /// Delete a topic.
    Delete {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        topic: String,
        /// Succeed when the topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
}

pub(crate) async fn run(cmd: TopicsCommand) -> Result<()> {
    match cmd {
        TopicsCommand::Advise(args) => crate::advise::run(args).await?,
        TopicsCommand::Create {
            connect,
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let configs = configs
                .iter()
                .map(|c| key_value(c))
                .collect::<Result<Vec<_>>>()?;
            let admin = connect.admin().await?;
            let new = NewTopic {
                name: topic.clone(),
                partitions: partitions.unwrap_or(-1),
                replication_factor: replication_factor.unwrap_or(-1),
                configs,
            };
            let result = admin
                .create_topics(&[new], false)
                .await?
                .pop()
                .context("no answer")?;
            match result {
                Ok(()) => println!("Created topic {topic}."),
                Err(weir_client::Error::Kafka {
                    error: weir_client::ResponseError::TopicAlreadyExists,
                    ..
                }) if if_not_exists => {}
                Err(e) => bail!("cannot create topic '{topic}': {e}"),
            }
        }
        TopicsCommand::List {
            connect,
            include_internal,
        } => {
            for t in connect.admin().await?.list_topics().await? {
                if include_internal || !t.internal {
                    println!("{}", t.name);
                }
            }
        }
        TopicsCommand::Describe { connect, topic } => {
            let admin = connect.admin().await?;
            let topics = match topic {
                Some(t) => vec![admin
                    .describe_topic(&t)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot describe '{t}': {e}"))?],
                None => admin
                    .list_topics()
                    .await?
                    .into_iter()
                    .filter(|t| !t.internal)
                    .collect(),
            };
            for t in topics {
                let configs = admin
                    .describe_configs(&t.name, false)
                    .await
                    .unwrap_or_default();
                let set: Vec<String> = configs
                    .iter()
                    .filter(|c| !c.is_default)
                    .map(|c| format!("{}={}", c.name, c.value.clone().unwrap_or_default()))
                    .collect();
                let rf = t.partitions.first().map_or(0, |p| p.replicas.len());
                println!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    t.name,
                    t.topic_id,
                    t.partitions.len(),
                    rf,
                    set.join(",")
                );
                println!(
                    "{:<12}{:<10}{:<8}{:<16}ISR",
                    "PARTITION", "LEADER", "EPOCH", "REPLICAS"
                );
                let list = |v: &[i32]| {
                    v.iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                for p in &t.partitions {
                    println!(
                        "{:<12}{:<10}{:<8}{:<16}{}",
                        p.partition,
                        p.leader,
                        p.leader_epoch,
                        list(&p.replicas),
                        list(&p.isr)
                    );
                }
            }
        }
        TopicsCommand::Alter {
            connect,
            topic,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            let admin = connect.admin().await?;
            if let Some(n) = partitions {
                admin
                    .create_partitions(&topic, n)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot add partitions to '{topic}': {e}"))?;
            }
            let mut changes: Vec<(String, Option<String>)> = Vec::new();
            for c in &configs {
                let (k, v) = key_value(c)?;
                changes.push((k, Some(v)));
            }
            changes.extend(delete_configs.into_iter().map(|k| (k, None)));
            if !changes.is_empty() {
                admin
                    .alter_topic_configs(&topic, &changes)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot alter configs of '{topic}': {e}"))?;
            }
            println!("Altered topic {topic}.");
        }
        TopicsCommand::Delete {
            connect,
            topic,
            if_exists,
        } => {
            let admin = connect.admin().await?;
            match admin
                .delete_topics(std::slice::from_ref(&topic))
                .await?
                .pop()
                .context("no answer")?
            {
                Ok(()) => println!("Deleted topic {topic}."),
                Err(weir_client::Error::Kafka {
                    error: weir_client::ResponseError::UnknownTopicOrPartition,
                    ..
                }) if if_exists => {}
                Err(e) => bail!("cannot delete topic '{topic}': {e}"),
            }
        }
    }
    Ok(())
}
