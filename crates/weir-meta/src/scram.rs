//! SCRAM credentials as metadata (KRaft's `UserScramCredentialRecord`): per user and mechanism,
//! the salt, the iteration count, and RFC 5802's stored and server keys. Never the password:
//! from these a broker can check a client's proof and prove itself, but not log in as the user.

use serde::{Deserialize, Serialize};

/// The SCRAM mechanisms, with Kafka's wire ids (`ScramMechanism` in the admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(s: &str) -> Option<ScramMechanism> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Kafka's id: 1 for SHA-256, 2 for SHA-512.
    pub fn id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_id(id: i8) -> Option<ScramMechanism> {
        Self::ALL.into_iter().find(|m| m.id() == id)
    }

    /// Kafka's bounds on the iteration count.
    pub fn min_iterations(self) -> i32 {
        4096
    }

    pub fn max_iterations(self) -> i32 {
        16384
    }
}

/// One user's credential for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}
