//! `weir users`: SCRAM users (list, set a password, delete a credential), through
//! DescribeUserScramCredentials and AlterUserScramCredentials. Passwords are salted by the
//! tool; the broker stores only salted keys. `weir configs --entity-type users` takes the same
//! changes in `kafka-configs.sh`'s syntax.

use anyhow::{anyhow, Result};
use clap::Subcommand;
use weir_client::SaslMechanism;

use crate::Connect;

/// Kafka's default iteration count for new SCRAM credentials.
pub(crate) const DEFAULT_ITERATIONS: i32 = 4096;

#[derive(Debug, Subcommand)]
pub(crate) enum UsersCommand {
    /// List SCRAM users with their mechanisms and iteration counts.
    List {
        #[command(flatten)]
        connect: Connect,
        /// Only these users. Repeatable.
        #[arg(long)]
        user: Vec<String>,
    },
    /// Make or replace a user's SCRAM credential.
    Set {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
        /// The password; `-` reads one line from standard input.
        #[arg(long)]
        password: String,
        /// PBKDF2 iterations (4096 to 16384).
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: i32,
    },
    /// Remove a user's SCRAM credential for one mechanism.
    Delete {
        #[command(flatten)]
        connect: Connect,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "SCRAM-SHA-256")]
        mechanism: String,
    },
}

pub(crate) fn scram_mechanism(name: &str) -> Result<SaslMechanism> {
    match SaslMechanism::from_name(name) {
        Some(m @ (SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512)) => Ok(m),
        _ => Err(anyhow!(
            "'{name}' is not a SCRAM mechanism (SCRAM-SHA-256 or SCRAM-SHA-512)"
        )),
    }
}

pub(crate) async fn run(cmd: UsersCommand) -> Result<()> {
    match cmd {
        UsersCommand::List { connect, user } => {
            let users = (!user.is_empty()).then_some(user.as_slice());
            let listed = connect
                .admin()
                .await?
                .describe_scram_users(users)
                .await
                .map_err(|e| anyhow!("cannot list users: {e}"))?;
            for u in listed {
                println!(
                    "{}\t{}\titerations={}",
                    u.user,
                    u.mechanism.name(),
                    u.iterations
                );
            }
        }
        UsersCommand::Set {
            connect,
            user,
            mechanism,
            password,
            iterations,
        } => {
            let mechanism = scram_mechanism(&mechanism)?;
            let password = if password == "-" {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                password
            };
            if password.is_empty() {
                anyhow::bail!("the password is empty");
            }
            connect
                .admin()
                .await?
                .set_scram_password(&user, mechanism, &password, iterations)
                .await
                .map_err(|e| anyhow!("cannot set {} for '{user}': {e}", mechanism.name()))?;
            println!("Set {} credential for user '{user}'.", mechanism.name());
        }
        UsersCommand::Delete {
            connect,
            user,
            mechanism,
        } => {
            let mechanism = scram_mechanism(&mechanism)?;
            connect
                .admin()
                .await?
                .delete_scram_credential(&user, mechanism)
                .await
                .map_err(|e| anyhow!("cannot delete {} of '{user}': {e}", mechanism.name()))?;
            println!("Deleted {} credential of user '{user}'.", mechanism.name());
        }
    }
    Ok(())
}
