//! DescribeUserScramCredentials and AlterUserScramCredentials: SCRAM users, the path
//! `kafka-configs.sh --alter --add-config 'SCRAM-SHA-256=[password=...]'` takes. The client
//! salts the password; the broker keeps only RFC 5802's stored and server keys.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use weir_meta::scram::{ScramCredential, ScramMechanism};
use weir_meta::ControllerOp;

use super::str_bytes;
use crate::broker::Broker;
use crate::errors::meta_error_code;
use crate::security::sasl;

pub(crate) fn describe(
    broker: &Arc<Broker>,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let image = broker.image();
    let mut by_user: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for ((user, mechanism), c) in &image.scram {
        by_user.entry(user).or_default().push(
            CredentialInfo::default()
                .with_mechanism(mechanism.id())
                .with_iterations(c.iterations),
        );
    }
    let result = |user: &str, infos: Vec<CredentialInfo>| {
        DescribeUserScramCredentialsResult::default()
            .with_user(str_bytes(user))
            .with_credential_infos(infos)
    };
    let results = match request.users {
        // Null or empty: every user with a credential.
        None => by_user.into_iter().map(|(u, i)| result(u, i)).collect(),
        Some(users) if users.is_empty() => by_user.into_iter().map(|(u, i)| result(u, i)).collect(),
        Some(users) => {
            let mut seen = BTreeSet::new();
            let duplicates: BTreeSet<&str> = users
                .iter()
                .filter(|u| !seen.insert(u.name.as_str()))
                .map(|u| u.name.as_str())
                .collect();
            let mut reported = BTreeSet::new();
            users
                .iter()
                .filter(|u| reported.insert(u.name.as_str()))
                .map(|u| {
                    let name = u.name.as_str();
                    if duplicates.contains(name) {
                        result(name, vec![])
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(Some(str_bytes(format!(
                                "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                            ))))
                    } else {
                        match by_user.get(name) {
                            Some(infos) => result(name, infos.clone()),
                            None => result(name, vec![])
                                .with_error_code(ResponseError::ResourceNotFound.code())
                                .with_error_message(Some(str_bytes(format!(
                                    "Attempt to describe a user credential that does not exist: {name}"
                                )))),
                        }
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

type Refusal = (i16, String);

/// The checks every alteration shares, in Kafka's order; each user keeps its first refusal.
#[derive(Default)]
struct Checks {
    /// Every user named, in the order first named.
    users: Vec<String>,
    named: BTreeSet<String>,
    /// One change per user and mechanism (Kafka's documented kafka-configs call sets both
    /// mechanisms of one user at once).
    altered: BTreeSet<(String, i8)>,
    errors: BTreeMap<String, Refusal>,
}

impl Checks {
    fn refuse(&mut self, user: &str, e: ResponseError, why: impl Into<String>) {
        self.errors
            .entry(user.to_string())
            .or_insert((e.code(), why.into()));
    }

    /// The mechanism of one alteration, if its user name, uniqueness and mechanism pass.
    fn check(&mut self, user: &str, mechanism: i8) -> Option<ScramMechanism> {
        if self.named.insert(user.to_string()) {
            self.users.push(user.to_string());
        }
        if user.is_empty() {
            self.refuse(
                user,
                ResponseError::UnacceptableCredential,
                "Username must not be empty",
            );
            return None;
        }
        if !self.altered.insert((user.to_string(), mechanism)) {
            let why = "A user credential cannot be altered twice in the same request";
            self.refuse(user, ResponseError::DuplicateResource, why);
            return None;
        }
        let m = ScramMechanism::from_id(mechanism);
        if m.is_none() {
            let why = format!("Unknown SCRAM mechanism {mechanism}");
            self.refuse(user, ResponseError::UnsupportedSaslMechanism, why);
        }
        m
    }
}

pub(crate) async fn alter(
    broker: &Arc<Broker>,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let image = broker.image();
    let mut checks = Checks::default();
    let mut deletions = Vec::new();
    for d in &request.deletions {
        let user = d.name.to_string();
        let Some(m) = checks.check(&user, d.mechanism) else {
            continue;
        };
        if image.scram.contains_key(&(user.clone(), m)) {
            deletions.push((user, m));
        } else {
            let why = "Attempt to delete a user credential that does not exist";
            checks.refuse(&user, ResponseError::ResourceNotFound, why);
        }
    }
    let mut upsertions: Vec<(String, ScramMechanism, ScramCredential)> = Vec::new();
    for u in &request.upsertions {
        let user = u.name.to_string();
        let Some(m) = checks.check(&user, u.mechanism) else {
            continue;
        };
        let why = if u.iterations < m.min_iterations() {
            Some("Too few iterations")
        } else if u.iterations > m.max_iterations() {
            Some("Too many iterations")
        } else if u.salt.is_empty() || u.salted_password.is_empty() {
            Some("Salt and salted password must not be empty")
        } else {
            None
        };
        match why {
            Some(why) => checks.refuse(&user, ResponseError::UnacceptableCredential, why),
            None => upsertions.push((
                user,
                m,
                sasl::credential_from_salted(m, &u.salted_password, u.salt.to_vec(), u.iterations),
            )),
        }
    }
    let Checks {
        users, mut errors, ..
    } = checks;
    // A user with any refused alteration gets none of them.
    deletions.retain(|(user, _)| !errors.contains_key(user));
    upsertions.retain(|(user, _, _)| !errors.contains_key(user));
    if !deletions.is_empty() || !upsertions.is_empty() {
        let changed: Vec<String> = deletions
            .iter()
            .map(|(u, _)| u.clone())
            .chain(upsertions.iter().map(|(u, _, _)| u.clone()))
            .collect();
        let op = ControllerOp::AlterScramCredentials {
            upsertions,
            deletions,
        };
        if let Err(e) = broker.controller_op(op).await {
            for user in changed {
                errors.insert(user, (meta_error_code(&e), e.to_string()));
            }
        }
    }
    let results = users
        .into_iter()
        .map(|user| {
            let r = AlterUserScramCredentialsResult::default().with_user(str_bytes(user.clone()));
            match errors.remove(&user) {
                Some((code, why)) => r
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(why))),
                None => r,
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}
