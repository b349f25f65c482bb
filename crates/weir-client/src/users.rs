//! The admin client's SCRAM users: DescribeUserScramCredentials and
//! AlterUserScramCredentials, the calls behind `kafka-configs.sh --entity-type users`. A
//! password is salted here (PBKDF2 over a random salt): the broker never sees it.

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::{Error, Result};
use crate::security::SaslMechanism;

/// One user's SCRAM credential: its mechanism and iteration count (never the keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    /// The user's name.
    pub user: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: SaslMechanism,
    /// The PBKDF2 iteration count.
    pub iterations: i32,
}

/// Kafka's id of a SCRAM mechanism (1 SHA-256, 2 SHA-512), or an error for PLAIN.
fn scram_id(mechanism: SaslMechanism) -> Result<i8> {
    match mechanism {
        SaslMechanism::ScramSha256 => Ok(1),
        SaslMechanism::ScramSha512 => Ok(2),
        SaslMechanism::Plain => Err(Error::Config(
            "PLAIN has no credentials of its own: PLAIN logins are checked against SCRAM ones"
                .into(),
        )),
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Admin {
    /// The SCRAM credentials of `users`, or of every user with `None`. A user asked for by
    /// name who has none is an error (RESOURCE_NOT_FOUND).
    pub async fn describe_scram_users(&self, users: Option<&[String]>) -> Result<Vec<ScramUser>> {
        let request =
            DescribeUserScramCredentialsRequest::default().with_users(users.map(|names| {
                names
                    .iter()
                    .map(|n| UserName::default().with_name(s(n)))
                    .collect()
            }));
        let (response, _) = self.controller().await?.request(&request, 0).await?;
        if response.error_code != 0 {
            return Err(Error::from_code(
                response.error_code,
                response.error_message.as_ref().map(|m| m.to_string()),
            ));
        }
        let mut out = Vec::new();
        for r in &response.results {
            if r.error_code != 0 {
                return Err(Error::from_code(
                    r.error_code,
                    r.error_message.as_ref().map(|m| format!("{}: {m}", r.user)),
                ));
            }
            for c in &r.credential_infos {
                let mechanism = match c.mechanism {
                    1 => SaslMechanism::ScramSha256,
                    2 => SaslMechanism::ScramSha512,
                    other => {
                        return Err(Error::Protocol(format!("unknown SCRAM mechanism {other}")))
                    }
                };
                out.push(ScramUser {
                    user: r.user.to_string(),
                    mechanism,
                    iterations: c.iterations,
                });
            }
        }
        Ok(out)
    }

    /// Makes or replaces `user`'s SCRAM credential for `mechanism` from `password`, salted
    /// here with `iterations` (4096 to 16384).
    pub async fn set_scram_password(
        &self,
        user: &str,
        mechanism: SaslMechanism,
        password: &str,
        iterations: i32,
    ) -> Result<()> {
        let id = scram_id(mechanism)?;
        let rounds = u32::try_from(iterations)
            .map_err(|_| Error::Config(format!("iterations {iterations} is not positive")))?;
        let salt: Vec<u8> = {
            use rand::RngCore;
            let mut salt = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut salt);
            salt
        };
        let password = password.to_string();
        let sha512 = mechanism == SaslMechanism::ScramSha512;
        let (salt, salted) = tokio::task::spawn_blocking(move || {
            let salted = crate::sasl::salted_password(sha512, &password, &salt, rounds);
            (salt, salted)
        })
        .await
        .map_err(|e| Error::Protocol(format!("salting the password failed: {e}")))?;
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(s(user))
                .with_mechanism(id)
                .with_iterations(iterations)
                .with_salt(salt.into())
                .with_salted_password(salted.into()),
        ]);
        self.alter_scram(request).await
    }

    /// Removes `user`'s SCRAM credential for `mechanism`.
    pub async fn delete_scram_credential(
        &self,
        user: &str,
        mechanism: SaslMechanism,
    ) -> Result<()> {
        let request = AlterUserScramCredentialsRequest::default().with_deletions(vec![
            ScramCredentialDeletion::default()
                .with_name(s(user))
                .with_mechanism(scram_id(mechanism)?),
        ]);
        self.alter_scram(request).await
    }

    async fn alter_scram(&self, request: AlterUserScramCredentialsRequest) -> Result<()> {
        let (response, _) = self.controller().await?.request(&request, 0).await?;
        for r in &response.results {
            if r.error_code != 0 {
                return Err(Error::from_code(
                    r.error_code,
                    r.error_message.as_ref().map(|m| m.to_string()),
                ));
            }
        }
        Ok(())
    }
}
