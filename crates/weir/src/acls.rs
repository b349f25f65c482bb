//! `weir acls`: add, remove and list ACLs, with the flags of `kafka-acls.sh`
//! (`--allow-principal`, `--deny-principal`, `--allow-host`, `--deny-host`, `--operation`,
//! `--topic`, `--group`, `--cluster`, `--transactional-id`, `--resource-pattern-type`, and the
//! `--producer` / `--consumer` shortcuts).

use anyhow::{anyhow, bail, Result};
use clap::{ArgGroup, Args};
use weir_client::{Acl, AclFilter};
use weir_meta::acl::{AclOperation, AclPermission, PatternType, ResourceType, CLUSTER_NAME};

use crate::Connect;

/// ANY in a filter, for every field with an id.
const ANY: i8 = 1;
/// MATCH as a filter's pattern type.
const MATCH: i8 = 2;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["add", "remove", "list"])))]
pub(crate) struct AclsArgs {
    #[command(flatten)]
    connect: Connect,
    /// Add the ACLs described by the other flags.
    #[arg(long)]
    add: bool,
    /// Remove the ACLs described; with no principal, every ACL of the resources.
    #[arg(long)]
    remove: bool,
    /// List ACLs: of the resources given, or all.
    #[arg(long)]
    list: bool,
    /// Principal to allow, as Type:name (User:alice, or User:* for everyone). Repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    allow_principal: Vec<String>,
    /// Principal to deny. Repeatable.
    #[arg(long, value_name = "PRINCIPAL")]
    deny_principal: Vec<String>,
    /// Host the allow applies to (default: any host, *). Repeatable.
    #[arg(long, value_name = "HOST")]
    allow_host: Vec<String>,
    /// Host the deny applies to (default: any host, *). Repeatable.
    #[arg(long, value_name = "HOST")]
    deny_host: Vec<String>,
    /// With --list: only the ACLs of this principal.
    #[arg(long, value_name = "PRINCIPAL")]
    principal: Option<String>,
    /// Operation: Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, All. Repeatable; default All.
    #[arg(long, value_name = "OPERATION")]
    operation: Vec<String>,
    /// Topic (a name, a prefix with --resource-pattern-type prefixed, or * for all). Repeatable.
    #[arg(long)]
    topic: Vec<String>,
    /// Consumer group. Repeatable.
    #[arg(long)]
    group: Vec<String>,
    /// The cluster itself.
    #[arg(long)]
    cluster: bool,
    /// Transactional id. Repeatable.
    #[arg(long)]
    transactional_id: Vec<String>,
    /// literal or prefixed; for --list and --remove also any or match.
    #[arg(long, default_value = "literal")]
    resource_pattern_type: String,
    /// Shortcut: Write, Describe and Create on the topics (and IdempotentWrite on the cluster
    /// with --idempotent).
    #[arg(long)]
    producer: bool,
    /// With --producer: IdempotentWrite on the cluster too.
    #[arg(long)]
    idempotent: bool,
    /// Shortcut: Read and Describe on the topics, Read on the groups.
    #[arg(long)]
    consumer: bool,
    /// Accepted for kafka-acls.sh compatibility: weir never asks for confirmation.
    #[arg(long)]
    force: bool,
}

impl AclsArgs {
    /// The resources named, with their types.
    fn resources(&self) -> Vec<(ResourceType, String)> {
        let named = |kind: ResourceType, names: &[String]| {
            names
                .iter()
                .map(move |n| (kind, n.clone()))
                .collect::<Vec<_>>()
        };
        let mut out = named(ResourceType::Topic, &self.topic);
        out.extend(named(ResourceType::Group, &self.group));
        out.extend(named(ResourceType::TransactionalId, &self.transactional_id));
        if self.cluster {
            out.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        out
    }

    fn operations(&self) -> Result<Vec<AclOperation>> {
        self.operation
            .iter()
            .map(|o| {
                AclOperation::from_name(o).ok_or_else(|| {
                    anyhow!("--operation {o}: unknown operation (Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite, All)")
                })
            })
            .collect()
    }

    /// The pattern type id: 3 LITERAL, 4 PREFIXED, and for filters 1 ANY or 2 MATCH.
    fn pattern(&self, filter: bool) -> Result<i8> {
        let p = self.resource_pattern_type.trim();
        if let Some(t) = PatternType::from_name(p) {
            return Ok(t.id());
        }
        match p.to_ascii_lowercase().as_str() {
            "any" if filter => Ok(ANY),
            "match" if filter => Ok(MATCH),
            _ if filter => {
                bail!("--resource-pattern-type {p}: expected literal, prefixed, any or match")
            }
            _ => bail!("--resource-pattern-type {p}: expected literal or prefixed to add ACLs"),
        }
    }

    /// Per resource, the operations to grant or take: --operation, and the shortcuts'
    /// (--producer: Write, Describe, Create on topics, Write and Describe on transactional ids,
    /// IdempotentWrite on the cluster with --idempotent; --consumer: Read and Describe on
    /// topics, Read on groups). With neither, All.
    fn operations_for(&self, kind: ResourceType) -> Result<Vec<AclOperation>> {
        use AclOperation::*;
        let mut ops = self.operations()?;
        if self.producer {
            match kind {
                ResourceType::Topic => ops.extend([Write, Describe, Create]),
                ResourceType::TransactionalId => ops.extend([Write, Describe]),
                ResourceType::Cluster if self.idempotent => ops.push(IdempotentWrite),
                _ => {}
            }
        }
        if self.consumer {
            match kind {
                ResourceType::Topic => ops.extend([Read, Describe]),
                ResourceType::Group => ops.push(Read),
                _ => {}
            }
        }
        if ops.is_empty() && !(self.producer || self.consumer) {
            ops.push(All);
        }
        ops.sort();
        ops.dedup();
        Ok(ops)
    }

    /// The resources the flags name, with the cluster when --producer --idempotent asks for
    /// IdempotentWrite on it.
    fn all_resources(&self) -> Result<Vec<(ResourceType, String)>> {
        if self.consumer && (self.topic.is_empty() || self.group.is_empty()) {
            bail!("--consumer needs --topic and --group");
        }
        if self.producer && self.topic.is_empty() && self.transactional_id.is_empty() {
            bail!("--producer needs --topic (or --transactional-id)");
        }
        let mut resources = self.resources();
        if self.producer && self.idempotent && !self.cluster {
            resources.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        Ok(resources)
    }

    /// The principals with their permission and hosts.
    fn grants(&self) -> Vec<(AclPermission, &String, Vec<String>)> {
        let hosts = |given: &[String]| {
            if given.is_empty() {
                vec!["*".to_string()]
            } else {
                given.to_vec()
            }
        };
        let allow = self
            .allow_principal
            .iter()
            .map(|p| (AclPermission::Allow, p, hosts(&self.allow_host)));
        let deny = self
            .deny_principal
            .iter()
            .map(|p| (AclPermission::Deny, p, hosts(&self.deny_host)));
        allow.chain(deny).collect()
    }

    /// Every ACL the flags describe.
    fn acls(&self) -> Result<Vec<Acl>> {
        let resources = self.all_resources()?;
        let pattern = self.pattern(false)?;
        let mut out = Vec::new();
        for (kind, name) in &resources {
            // The cluster is one resource, always literal.
            let pattern = if *kind == ResourceType::Cluster {
                PatternType::Literal.id()
            } else {
                pattern
            };
            for op in self.operations_for(*kind)? {
                for (permission, principal, hosts) in self.grants() {
                    for host in hosts {
                        out.push(Acl {
                            resource_type: kind.id(),
                            resource_name: name.clone(),
                            pattern_type: pattern,
                            principal: principal.clone(),
                            host,
                            operation: op.id(),
                            permission: permission.id(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

fn name_of<T: Copy>(id: i8, from_id: fn(i8) -> Option<T>, name: fn(T) -> &'static str) -> String {
    from_id(id).map_or_else(|| format!("UNKNOWN({id})"), |v| name(v).to_string())
}

/// `kafka-acls.sh`'s layout: each resource pattern, then its ACLs.
fn print(acls: &[Acl]) {
    let mut acls = acls.to_vec();
    acls.sort();
    let mut current: Option<(i8, &str, i8)> = None;
    for a in &acls {
        let key = (a.resource_type, a.resource_name.as_str(), a.pattern_type);
        if current != Some(key) {
            println!(
                "Current ACLs for resource `ResourcePattern(resourceType={}, name={}, patternType={})`:",
                name_of(a.resource_type, ResourceType::from_id, ResourceType::name),
                a.resource_name,
                name_of(a.pattern_type, PatternType::from_id, PatternType::name),
            );
            current = Some(key);
        }
        println!(
            " \t(principal={}, host={}, operation={}, permissionType={})",
            a.principal,
            a.host,
            name_of(a.operation, AclOperation::from_id, AclOperation::name),
            name_of(a.permission, AclPermission::from_id, AclPermission::name),
        );
    }
}

pub(crate) async fn run(args: AclsArgs) -> Result<()> {
    let admin = args.connect.admin().await?;
    if args.add {
        if args.allow_principal.is_empty() && args.deny_principal.is_empty() {
            bail!("--add needs --allow-principal or --deny-principal");
        }
        if args.resources().is_empty() {
            bail!("--add needs a resource: --topic, --group, --cluster or --transactional-id");
        }
        let acls = args.acls()?;
        for (acl, result) in acls.iter().zip(admin.create_acls(&acls).await?) {
            result.map_err(|e| anyhow!("cannot add {}: {e}", describe(acl)))?;
        }
        println!("Added {} ACLs", acls.len());
        print(&acls);
        return Ok(());
    }
    let filters = filters(&args)?;
    if args.remove {
        if args.resources().is_empty() {
            bail!("--remove needs a resource: --topic, --group, --cluster or --transactional-id");
        }
        let mut removed = Vec::new();
        for result in admin.delete_acls(&filters).await? {
            removed.extend(result.map_err(|e| anyhow!("cannot remove ACLs: {e}"))?);
        }
        println!("Removed {} ACLs", removed.len());
        print(&removed);
        return Ok(());
    }
    let mut listed = Vec::new();
    for filter in &filters {
        listed.extend(
            admin
                .describe_acls(filter)
                .await
                .map_err(|e| anyhow!("cannot list ACLs: {e}"))?,
        );
    }
    listed.sort();
    listed.dedup();
    print(&listed);
    Ok(())
}

/// The filters of --remove and --list: per resource (or every resource for a bare --list),
/// the principals, hosts and operations given, or any.
fn filters(args: &AclsArgs) -> Result<Vec<AclFilter>> {
    let pattern = args.pattern(true)?;
    let named = args.all_resources()?;
    // Per resource, the operations given (directly or by --producer/--consumer), or any.
    let given = !args.operation.is_empty() || args.producer || args.consumer;
    let operations = |kind: Option<ResourceType>| -> Result<Vec<i8>> {
        match kind {
            Some(kind) if given => Ok(args
                .operations_for(kind)?
                .into_iter()
                .map(AclOperation::id)
                .collect()),
            _ => Ok(vec![ANY]),
        }
    };
    let mut resources: Vec<(i8, Option<String>, i8, Vec<i8>)> = Vec::new();
    if named.is_empty() {
        resources.push((ANY, None, ANY, operations(None)?));
    }
    for (kind, name) in named {
        let pattern = if kind == ResourceType::Cluster {
            PatternType::Literal.id()
        } else {
            pattern
        };
        resources.push((kind.id(), Some(name), pattern, operations(Some(kind))?));
    }
    let mut who: Vec<(Option<String>, Option<String>, i8)> = args
        .grants()
        .into_iter()
        .flat_map(|(permission, principal, hosts)| {
            let explicit = match permission {
                AclPermission::Allow => !args.allow_host.is_empty(),
                AclPermission::Deny => !args.deny_host.is_empty(),
            };
            hosts.into_iter().map(move |h| {
                (
                    Some(principal.clone()),
                    explicit.then_some(h),
                    permission.id(),
                )
            })
        })
        .collect();
    if who.is_empty() {
        who.push((args.principal.clone(), None, ANY));
    }
    let mut out = Vec::new();
    for (kind, name, pattern, operations) in &resources {
        for op in operations {
            for (principal, host, permission) in &who {
                out.push(AclFilter {
                    resource_type: *kind,
                    resource_name: name.clone(),
                    pattern_type: *pattern,
                    principal: principal.clone(),
                    host: host.clone(),
                    operation: *op,
                    permission: *permission,
                });
            }
        }
    }
    Ok(out)
}

fn describe(acl: &Acl) -> String {
    format!(
        "{} {} for {} on {} '{}'",
        name_of(acl.permission, AclPermission::from_id, AclPermission::name),
        name_of(acl.operation, AclOperation::from_id, AclOperation::name),
        acl.principal,
        name_of(acl.resource_type, ResourceType::from_id, ResourceType::name),
        acl.resource_name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AclsArgs,
    }

    fn parse(flags: &[&str]) -> AclsArgs {
        Cli::try_parse_from(std::iter::once("acls").chain(flags.iter().copied()))
            .unwrap()
            .args
    }

    fn ops(acls: &[Acl], kind: ResourceType) -> Vec<&'static str> {
        let mut ops: Vec<_> = acls
            .iter()
            .filter(|a| a.resource_type == kind.id())
            .filter_map(|a| AclOperation::from_id(a.operation).map(AclOperation::name))
            .collect();
        ops.sort();
        ops
    }

    #[test]
    fn producer_and_consumer_shortcuts_merge_as_in_kafka_acls() {
        let args = parse(&[
            "--add",
            "--allow-principal",
            "User:a",
            "--producer",
            "--consumer",
            "--idempotent",
            "--topic",
            "t",
            "--group",
            "g",
            "--transactional-id",
            "tx",
        ]);
        let acls = args.acls().unwrap();
        assert_eq!(
            ops(&acls, ResourceType::Topic),
            ["CREATE", "DESCRIBE", "READ", "WRITE"]
        );
        assert_eq!(ops(&acls, ResourceType::Group), ["READ"]);
        assert_eq!(
            ops(&acls, ResourceType::TransactionalId),
            ["DESCRIBE", "WRITE"]
        );
        assert_eq!(ops(&acls, ResourceType::Cluster), ["IDEMPOTENT_WRITE"]);
    }

    #[test]
    fn removal_filters_keep_the_shortcuts_operations() {
        let args = parse(&[
            "--remove",
            "--allow-principal",
            "User:a",
            "--producer",
            "--topic",
            "t",
        ]);
        let found = filters(&args).unwrap();
        let mut ops: Vec<i8> = found.iter().map(|f| f.operation).collect();
        ops.sort();
        let mut want: Vec<i8> = [
            AclOperation::Write,
            AclOperation::Describe,
            AclOperation::Create,
        ]
        .iter()
        .map(|o| o.id())
        .collect();
        want.sort();
        assert_eq!(ops, want);
        assert!(found
            .iter()
            .all(|f| f.principal.as_deref() == Some("User:a")));
        // A bare --list matches everything.
        let all = filters(&parse(&["--list"])).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].resource_type, all[0].operation), (ANY, ANY));
    }

    #[test]
    fn shortcuts_without_their_resources_are_refused() {
        let consumer = parse(&[
            "--add",
            "--allow-principal",
            "User:a",
            "--consumer",
            "--topic",
            "t",
        ]);
        assert!(consumer.acls().is_err());
        assert!(
            parse(&["--add", "--topic", "t", "--resource-pattern-type", "match"])
                .acls()
                .is_err()
        );
    }
}
