//! `weir configs`: describe and alter the configs of topics, brokers, users and clients, with
//! the flags of `kafka-configs.sh` (`--entity-type topics|brokers|users|clients`,
//! `--entity-name`, `--entity-default`, `--describe`, `--alter`, `--add-config k=v,k2=[a,b]`,
//! `--delete-config k,k2`). A user's configs are its SCRAM credentials:
//! `--add-config 'SCRAM-SHA-256=[iterations=8192,password=secret]'`, `--delete-config
//! SCRAM-SHA-256`, and its quotas; a client id's are its quotas
//! (`producer_byte_rate`, `consumer_byte_rate`, `request_percentage`).

use anyhow::{anyhow, bail, Result};
use clap::{ArgGroup, Args};

use crate::Connect;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["describe", "alter"])))]
pub(crate) struct ConfigsArgs {
    #[command(flatten)]
    connect: Connect,
    /// Print the configs of the entity.
    #[arg(long)]
    describe: bool,
    /// Change the configs of the entity.
    #[arg(long)]
    alter: bool,
    /// topics, brokers, users or clients.
    #[arg(long)]
    entity_type: String,
    /// The topic's name or the broker's id.
    #[arg(long, group = "entity")]
    entity_name: Option<String>,
    /// The cluster-wide default of dynamic broker configs (brokers), or the default user or
    /// client id of quotas.
    #[arg(long, group = "entity")]
    entity_default: bool,
    /// Configs to set: k=v,k2=v2; a list value in brackets, k=[a,b].
    #[arg(long)]
    add_config: Option<String>,
    /// Configs to remove (back to their defaults): k,k2.
    #[arg(long)]
    delete_config: Option<String>,
}

/// Splits `k=v,k2=[a,b]` at the commas outside brackets.
fn parse_add_config(s: &str) -> Result<Vec<(String, String)>> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    items
        .into_iter()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|item| {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| anyhow!("--add-config: expected key=value, got '{item}'"))?;
            let v = v.trim();
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(v);
            Ok((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// Kafka's names for where a value comes from.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        _ => "UNKNOWN",
    }
}

pub(crate) async fn run(args: ConfigsArgs) -> Result<()> {
    let broker = match args.entity_type.as_str() {
        "topics" | "topic" => false,
        "brokers" | "broker" => true,
        "users" | "user" if quota_keys(&args) => return quotas(args, "user").await,
        "users" | "user" => return users(args).await,
        "clients" | "client" => return quotas(args, "client-id").await,
        other => bail!("--entity-type {other}: expected topics, brokers, users or clients"),
    };
    let name = match (&args.entity_name, args.entity_default) {
        (Some(name), _) => name.clone(),
        (None, true) if broker => String::new(),
        (None, true) => bail!("--entity-default applies to --entity-type brokers only"),
        (None, false) => bail!("give --entity-name (or --entity-default for brokers)"),
    };
    let broker_id = if broker && !name.is_empty() {
        Some(
            name.parse::<i32>()
                .map_err(|_| anyhow!("--entity-name {name}: a broker is named by its id"))?,
        )
    } else {
        None
    };
    let admin = args.connect.admin().await?;
    let what = if !broker {
        format!("topic '{name}'")
    } else if name.is_empty() {
        "the cluster-wide broker defaults".to_string()
    } else {
        format!("broker {name}")
    };
    if args.describe {
        let configs = admin
            .describe_configs(&name, broker)
            .await
            .map_err(|e| anyhow!("cannot describe {what}: {e}"))?;
        println!("Configs for {what} are:");
        for c in configs.iter().filter(|c| !c.is_default || !broker) {
            println!(
                "  {}={} ({})",
                c.name,
                c.value.as_deref().unwrap_or("null"),
                source_name(c.source)
            );
        }
        return Ok(());
    }
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    if let Some(add) = &args.add_config {
        changes.extend(
            parse_add_config(add)?
                .into_iter()
                .map(|(k, v)| (k, Some(v))),
        );
    }
    if let Some(delete) = &args.delete_config {
        changes.extend(
            delete
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| (k.to_string(), None)),
        );
    }
    if changes.is_empty() {
        bail!("--alter needs --add-config or --delete-config");
    }
    let result = if broker {
        admin.alter_broker_configs(broker_id, &changes).await
    } else {
        admin.alter_topic_configs(&name, &changes).await
    };
    result.map_err(|e| anyhow!("cannot alter {what}: {e}"))?;
    println!("Completed updating config for {what}.");
    Ok(())
}

/// Whether a users command is about quotas: it names a quota key, or describes without SCRAM.
fn quota_keys(args: &ConfigsArgs) -> bool {
    let names = |list: &Option<String>| -> Vec<String> {
        list.iter()
            .flat_map(|l| l.split(','))
            .map(|k| k.split('=').next().unwrap_or("").trim().to_string())
            .collect()
    };
    let keys: Vec<String> = names(&args.add_config)
        .into_iter()
        .chain(names(&args.delete_config))
        .collect();
    keys.iter()
        .any(|k| weir_meta::quotas::QUOTA_KEYS.contains(&k.as_str()))
        || (args.describe && args.entity_default)
}

/// Quotas of a user or client id (`kind`), or of its default with `--entity-default`.
async fn quotas(args: ConfigsArgs, kind: &str) -> Result<()> {
    let entity = vec![(kind.to_string(), args.entity_name.clone())];
    if args.entity_name.is_none() && !args.entity_default {
        bail!("give --entity-name, or --entity-default for the default {kind}");
    }
    let what = match &args.entity_name {
        Some(n) if kind == "user" => format!("user-principal '{n}'"),
        Some(n) => format!("{kind} '{n}'"),
        None => format!("the default {kind}"),
    };
    let admin = args.connect.admin().await?;
    if args.describe {
        let values = quota_values(&admin, &entity, &what).await?;
        println!("Quota configs for {what} are {values}");
        return Ok(());
    }
    let mut ops = Vec::new();
    if let Some(add) = &args.add_config {
        for (key, value) in parse_add_config(add)? {
            if key.starts_with("SCRAM-") {
                bail!("--add-config: set SCRAM credentials and quotas in separate commands");
            }
            let v: f64 = value
                .parse()
                .map_err(|_| anyhow!("--add-config {key}: '{value}' is not a number"))?;
            ops.push((key, Some(v)));
        }
    }
    if let Some(delete) = &args.delete_config {
        for key in delete.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            ops.push((key.to_string(), None));
        }
    }
    if ops.is_empty() {
        bail!("--alter needs --add-config or --delete-config");
    }
    admin
        .alter_client_quotas(&entity, &ops)
        .await
        .map_err(|e| anyhow!("cannot alter the quotas of {what}: {e}"))?;
    println!("Completed updating config for {what}.");
    Ok(())
}

/// The quotas set on `entity`, as kafka-configs.sh lists them: `k=v, k2=v2`.
async fn quota_values(
    admin: &weir_client::Admin,
    entity: &[weir_client::EntityPart],
    what: &str,
) -> Result<String> {
    let listed = admin
        .describe_client_quotas(entity)
        .await
        .map_err(|e| anyhow!("cannot describe the quotas of {what}: {e}"))?;
    let values: Vec<String> = listed
        .iter()
        .flat_map(|q| &q.values)
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    Ok(values.join(", "))
}

/// `--entity-type users`: SCRAM credentials in kafka-configs.sh's syntax.
async fn users(args: ConfigsArgs) -> Result<()> {
    let admin = args.connect.admin().await?;
    if args.describe {
        let names = args.entity_name.clone().map(|n| vec![n]);
        // A user with quotas but no credential is not an error here.
        let listed = match admin.describe_scram_users(names.as_deref()).await {
            Ok(listed) => listed,
            Err(weir_client::Error::Kafka {
                error: weir_client::ResponseError::ResourceNotFound,
                ..
            }) if args.entity_name.is_some() => Vec::new(),
            Err(e) => bail!("cannot describe users: {e}"),
        };
        for u in listed {
            println!(
                "SCRAM credential configs for user-principal '{}' are {}=iterations={}",
                u.user,
                u.mechanism.name(),
                u.iterations
            );
        }
        if let Some(name) = &args.entity_name {
            let entity = [("user".to_string(), Some(name.clone()))];
            let what = format!("user-principal '{name}'");
            let values = quota_values(&admin, &entity, &what).await?;
            if !values.is_empty() {
                println!("Quota configs for {what} are {values}");
            }
        }
        return Ok(());
    }
    let user = args
        .entity_name
        .clone()
        .ok_or_else(|| anyhow!("--entity-type users needs --entity-name"))?;
    let mut done = false;
    if let Some(add) = &args.add_config {
        for (mechanism, value) in parse_add_config(add)? {
            let mechanism = crate::users::scram_mechanism(&mechanism)?;
            let mut password = None;
            let mut iterations = crate::users::DEFAULT_ITERATIONS;
            for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                match item.split_once('=') {
                    Some(("password", p)) => password = Some(p.to_string()),
                    Some(("iterations", i)) => {
                        iterations = i.parse().map_err(|_| {
                            anyhow!("--add-config: iterations '{i}' is not a number")
                        })?
                    }
                    _ => bail!(
                        "--add-config {}: expected [iterations=N,password=...]",
                        mechanism.name()
                    ),
                }
            }
            let password = password
                .ok_or_else(|| anyhow!("--add-config {}: no password", mechanism.name()))?;
            admin
                .set_scram_password(&user, mechanism, &password, iterations)
                .await
                .map_err(|e| anyhow!("cannot alter user '{user}': {e}"))?;
            done = true;
        }
    }
    if let Some(delete) = &args.delete_config {
        for mechanism in delete.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let mechanism = crate::users::scram_mechanism(mechanism)?;
            admin
                .delete_scram_credential(&user, mechanism)
                .await
                .map_err(|e| anyhow!("cannot alter user '{user}': {e}"))?;
            done = true;
        }
    }
    if !done {
        bail!("--alter needs --add-config or --delete-config");
    }
    println!("Completed updating config for user {user}.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_config_takes_kafkas_list_syntax() {
        let parsed = parse_add_config("a=1, cleanup.policy=[compact,delete],b=x=y").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("a".to_string(), "1".to_string()),
                ("cleanup.policy".to_string(), "compact,delete".to_string()),
                ("b".to_string(), "x=y".to_string()),
            ]
        );
        assert!(parse_add_config("novalue").is_err());
    }
}
