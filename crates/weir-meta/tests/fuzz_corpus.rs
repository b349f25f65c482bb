//! Replays the quorum RPC fuzz corpus (`fuzz/corpus/quorum_rpc`) and generated seeds (real
//! operations framed as a peer sends them, cut at every length and with seeded bit flips)
//! through the entry point the fuzz target uses. None may panic.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use weir_meta::fuzzing::decode_quorum_rpc;
use weir_meta::{ControllerOp, CreateTopic};
use weir_types::BrokerId;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry.path().is_file() {
                out.push(std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

/// A frame as the voters' RPC carries it: version 1, the kind, the JSON body.
fn frame(kind: u8, body: &impl serde::Serialize) -> Vec<u8> {
    let mut out = vec![1, kind];
    out.extend(serde_json::to_vec(body).unwrap());
    out
}

#[test]
fn quorum_rpc_corpus_and_mutations_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    for entry in corpus("quorum_rpc") {
        decode_quorum_rpc(&entry);
    }
    let seeds = [
        frame(
            4,
            &ControllerOp::CreateTopic {
                request: CreateTopic {
                    name: "t".into(),
                    num_partitions: 3,
                    replication_factor: 1,
                    ..CreateTopic::default()
                },
                default_partitions: 1,
                default_replication_factor: 1,
                validate_only: false,
            },
        ),
        frame(
            4,
            &ControllerOp::Heartbeat {
                broker_id: BrokerId(1),
            },
        ),
        frame(5, &serde_json::json!({ "since": 7 })),
    ];
    for seed in &seeds {
        assert!(decode_quorum_rpc(seed), "a real frame must decode");
        for cut in 0..seed.len() {
            decode_quorum_rpc(&seed[..cut]);
        }
        for _ in 0..300 {
            let mut m = seed.clone();
            let at = rng.gen_range(0..m.len());
            m[at] = rng.gen();
            decode_quorum_rpc(&m);
        }
    }
}
