//! SCRAM credentials as metadata (KRaft's `UserScramCredentialRecord`): per user and mechanism,
//! the salt, the iteration count, and RFC 5802's stored and server keys. Never the password:
//! from these a broker can check a client's proof and prove itself, but not log in as the user.

use serde::{Deserialize, Serialize};

use crate::image::MetadataImage;
use crate::records::MetadataRecord;

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

/// The records of an AlterUserScramCredentials whose alterations the broker has checked:
/// removing a credential that is gone changes nothing.
pub(crate) fn plan_alter(
    image: &MetadataImage,
    upsertions: &[(String, ScramMechanism, ScramCredential)],
    deletions: &[(String, ScramMechanism)],
) -> Vec<MetadataRecord> {
    let removals = deletions
        .iter()
        .filter(|(name, m)| image.scram.contains_key(&(name.clone(), *m)))
        .map(|(name, m)| MetadataRecord::RemoveScramCredential {
            name: name.clone(),
            mechanism: *m,
        });
    let made = upsertions
        .iter()
        .map(|(name, m, c)| MetadataRecord::ScramCredential {
            name: name.clone(),
            mechanism: *m,
            credential: c.clone(),
        });
    removals.chain(made).collect()
}

/// The records of `--add-scram`: none once a broker applied its own, else the credentials
/// still missing and the mark that they were applied.
pub(crate) fn plan_bootstrap(
    image: &MetadataImage,
    credentials: &[(String, ScramMechanism, ScramCredential)],
) -> Vec<MetadataRecord> {
    if image.scram_bootstrapped {
        return Vec::new();
    }
    let missing: Vec<_> = credentials
        .iter()
        .filter(|(name, m, _)| !image.scram.contains_key(&(name.clone(), *m)))
        .cloned()
        .collect();
    let mut records = plan_alter(image, &missing, &[]);
    records.push(MetadataRecord::ScramBootstrapped);
    records
}
