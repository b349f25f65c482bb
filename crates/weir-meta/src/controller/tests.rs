use super::*;

fn ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().copied().map(BrokerId).collect()
}

/// Runs ops against an image as the active controller would, without a quorum.
fn run(image: &mut MetadataImage, op: ControllerOp) -> Result<Outcome> {
    let (outcome, records) = op.plan(image)?;
    for r in &records {
        image.apply(r);
    }
    Ok(outcome)
}

fn with_broker() -> MetadataImage {
    let mut image = MetadataImage::default();
    run(
        &mut image,
        ControllerOp::RegisterBroker {
            broker_id: BrokerId(0),
            host: "127.0.0.1".into(),
            port: 9092,
            endpoints: vec![],
            rack: None,
            incarnation: Uuid::from_u128(1),
            previous_broker_epoch: None,
        },
    )
    .unwrap();
    image
}

fn create(request: CreateTopic, validate_only: bool) -> ControllerOp {
    ControllerOp::CreateTopic {
        request,
        default_partitions: 1,
        default_replication_factor: 1,
        validate_only,
    }
}

#[test]
fn topics_are_validated_and_survive_a_rebuild() {
    let mut image = with_broker();
    let req = CreateTopic {
        name: "orders".into(),
        num_partitions: 3,
        replication_factor: 1,
        configs: vec![("retention.ms".into(), "1000".into())],
        ..Default::default()
    };
    let dry = CreateTopic {
        name: "dry".into(),
        ..req.clone()
    };
    assert!(run(&mut image, create(dry, true)).is_ok());
    assert!(image.topic("dry").is_none());
    let Outcome::TopicId(id) = run(&mut image, create(req.clone(), false)).unwrap() else {
        panic!("no topic id");
    };
    assert!(matches!(
        run(&mut image, create(req, false)),
        Err(MetaError::TopicAlreadyExists(_))
    ));
    let bad_rf = CreateTopic {
        name: "x".into(),
        num_partitions: 1,
        replication_factor: 3,
        ..Default::default()
    };
    assert!(matches!(
        run(&mut image, create(bad_rf, false)),
        Err(MetaError::InvalidReplicationFactor(_))
    ));
    let bad_name = CreateTopic {
        name: "a/b".into(),
        num_partitions: 1,
        replication_factor: 1,
        ..Default::default()
    };
    assert!(matches!(
        run(&mut image, create(bad_name, false)),
        Err(MetaError::InvalidTopicName(_))
    ));
    let grow = |total| ControllerOp::CreatePartitions {
        name: "orders".into(),
        total,
        assignments: None,
        validate_only: false,
    };
    run(&mut image, grow(5)).unwrap();
    assert!(matches!(
        run(&mut image, grow(2)),
        Err(MetaError::InvalidPartitions(_))
    ));
    // The snapshot records rebuild the same image.
    let mut rebuilt = MetadataImage::default();
    for r in image.to_records() {
        rebuilt.apply(&r);
    }
    assert_eq!(rebuilt, image);
    let topic = rebuilt.topic("orders").unwrap();
    assert_eq!(topic.topic_id, id);
    assert_eq!(topic.partitions.len(), 5);
    assert_eq!(
        rebuilt
            .configs(&ConfigResource::Topic("orders".into()))
            .get("retention.ms")
            .unwrap(),
        "1000"
    );
    run(
        &mut image,
        ControllerOp::DeleteTopic {
            name: "orders".into(),
        },
    )
    .unwrap();
    assert!(image.topic("orders").is_none());
    assert!(image
        .configs(&ConfigResource::Topic("orders".into()))
        .is_empty());
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut image = with_broker();
    let mut starts = Vec::new();
    for _ in 0..3 {
        let Outcome::ProducerIds(start) =
            run(&mut image, ControllerOp::AllocateProducerIds).unwrap()
        else {
            panic!("no block");
        };
        starts.push(start);
    }
    assert_eq!(
        starts,
        vec![
            ProducerId(0),
            ProducerId(PRODUCER_ID_BLOCK_SIZE),
            ProducerId(2 * PRODUCER_ID_BLOCK_SIZE)
        ]
    );
}

#[test]
fn fenced_brokers_get_no_new_replicas_and_heartbeats_unfence() {
    let mut image = with_broker();
    run(
        &mut image,
        ControllerOp::RegisterBroker {
            broker_id: BrokerId(1),
            host: "127.0.0.2".into(),
            port: 9092,
            endpoints: vec![],
            rack: None,
            incarnation: Uuid::from_u128(2),
            previous_broker_epoch: None,
        },
    )
    .unwrap();
    run(
        &mut image,
        ControllerOp::ControlledShutdown {
            broker_id: BrokerId(1),
        },
    )
    .unwrap();
    let two = CreateTopic {
        name: "two".into(),
        num_partitions: 2,
        replication_factor: 2,
        ..Default::default()
    };
    assert!(matches!(
        run(&mut image, create(two.clone(), false)),
        Err(MetaError::InvalidReplicationFactor(_))
    ));
    assert!(matches!(
        run(
            &mut image,
            ControllerOp::Heartbeat {
                broker_id: BrokerId(7)
            }
        ),
        Err(MetaError::UnknownBroker(BrokerId(7)))
    ));
    run(
        &mut image,
        ControllerOp::Heartbeat {
            broker_id: BrokerId(1),
        },
    )
    .unwrap();
    assert!(image.is_live(BrokerId(1)));
    run(&mut image, create(two, false)).unwrap();
    let leaders: Vec<Option<BrokerId>> = image
        .topic("two")
        .unwrap()
        .partitions
        .values()
        .map(|p| p.leader)
        .collect();
    assert_eq!(leaders.len(), 2);
    assert_ne!(leaders[0], leaders[1], "leaders spread over both brokers");
}

fn register(image: &mut MetadataImage, broker_id: BrokerId) {
    run(
        image,
        ControllerOp::RegisterBroker {
            broker_id,
            host: format!("127.0.0.{}", broker_id.get() + 1),
            port: 9092,
            endpoints: vec![],
            rack: None,
            incarnation: Uuid::from_u128(broker_id.get() as u128 + 1),
            previous_broker_epoch: None,
        },
    )
    .unwrap();
}

/// Sets one partition's state directly, as a sequence of elections would have left it.
fn set_partition(
    image: &mut MetadataImage,
    topic: &str,
    partition: i32,
    isr: &[BrokerId],
    leader: Option<BrokerId>,
) {
    let t = image.topic(topic).unwrap();
    let p = PartitionImage::clone(&t.partitions[&partition]);
    let record = election::partition_record(
        t.topic_id,
        partition,
        crate::image::PartitionImage {
            isr: isr.to_vec(),
            leader,
            leader_epoch: p.leader_epoch.next(),
            ..p
        },
    );
    image.apply(&record);
}

fn elect(
    image: &mut MetadataImage,
    partitions: Option<Vec<(&str, i32)>>,
    preferred: bool,
) -> Vec<(String, i32, Option<MetaError>)> {
    let op = ControllerOp::ElectLeaders {
        partitions: partitions.map(|l| l.into_iter().map(|(t, p)| (t.to_string(), p)).collect()),
        preferred,
    };
    let Outcome::Elections(results) = run(image, op).unwrap() else {
        panic!("no election results");
    };
    results
        .into_iter()
        .map(|e| (e.topic, e.partition, e.error))
        .collect()
}

#[test]
fn elections_per_partition() {
    let mut image = MetadataImage::default();
    for b in 0..3 {
        register(&mut image, BrokerId(b));
    }
    let request = CreateTopic {
        name: "t".into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, ids(&[0, 1])), (1, ids(&[1, 2])), (2, ids(&[2, 0]))],
        ..Default::default()
    };
    run(&mut image, create(request, false)).unwrap();
    // p0 led by its second replica while the first is back in sync; p2 offline with its only
    // ISR member fenced.
    set_partition(&mut image, "t", 0, &ids(&[0, 1]), Some(BrokerId(1)));
    run(
        &mut image,
        ControllerOp::ControlledShutdown {
            broker_id: BrokerId(2),
        },
    )
    .unwrap();
    set_partition(&mut image, "t", 2, &ids(&[2]), None);
    let epoch =
        |image: &MetadataImage, p: i32| image.topic("t").unwrap().partitions[&p].leader_epoch;
    let before = (epoch(&image, 0), epoch(&image, 2));

    // Preferred, for every partition: p0 moves back to broker 0; p1's preferred broker 1 leads
    // already (left out); p2's preferred replica 2 is fenced.
    let results = elect(&mut image, None, true);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[0], ("t".into(), 0, None));
    assert!(matches!(
        results[1],
        (_, 2, Some(MetaError::PreferredLeaderNotAvailable(_)))
    ));
    let p0 = &image.topic("t").unwrap().partitions[&0];
    assert_eq!(
        (p0.leader, p0.leader_epoch),
        (Some(BrokerId(0)), before.0.next())
    );

    // Named partitions are all answered, unknown ones too.
    let results = elect(
        &mut image,
        Some(vec![("t", 0), ("t", 0), ("t", 9), ("nope", 0)]),
        true,
    );
    assert_eq!(results.len(), 3, "a partition named twice is answered once");
    assert!(matches!(
        results[0].2,
        Some(MetaError::ElectionNotNeeded(_))
    ));
    assert!(matches!(results[1].2, Some(MetaError::UnknownPartition(_))));
    assert!(matches!(results[2].2, Some(MetaError::UnknownTopic(_))));

    // Unclean: p2 has no live ISR member; broker 0 is live and out of the ISR, and is elected
    // even though the topic does not enable unclean election. p1 has a live leader.
    let results = elect(&mut image, Some(vec![("t", 2), ("t", 1)]), false);
    assert_eq!(results[0], ("t".into(), 2, None));
    assert!(matches!(
        results[1].2,
        Some(MetaError::ElectionNotNeeded(_))
    ));
    let p2 = &image.topic("t").unwrap().partitions[&2];
    assert_eq!((p2.leader, p2.isr.clone()), (Some(BrokerId(0)), ids(&[0])));
    assert!(p2.leader_epoch > before.1);
}

#[test]
fn alter_partition_is_fenced_by_epoch_and_isr() {
    let mut image = MetadataImage::default();
    for b in 0..3 {
        register(&mut image, BrokerId(b));
    }
    let request = CreateTopic {
        name: "t".into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, ids(&[0, 1, 2]))],
        ..Default::default()
    };
    run(&mut image, create(request, false)).unwrap();
    let state = |image: &MetadataImage| image.topic("t").unwrap().partitions[&0].as_ref().clone();
    let topic_id = image.topic("t").unwrap().topic_id;
    let alter = |broker_id, epoch, current_isr, new_isr| ControllerOp::AlterPartition {
        broker_id,
        topic_id,
        partition: 0,
        leader_epoch: epoch,
        current_isr,
        new_isr,
    };
    let p = state(&image);
    assert_eq!(
        (p.leader, p.isr.clone()),
        (Some(BrokerId(0)), ids(&[0, 1, 2]))
    );
    // The leader drops broker 2, which fell behind; epochs stay.
    run(
        &mut image,
        alter(BrokerId(0), p.leader_epoch, ids(&[0, 1, 2]), ids(&[0, 1])),
    )
    .unwrap();
    assert_eq!(state(&image).isr, ids(&[0, 1]));
    assert_eq!(state(&image).leader_epoch, p.leader_epoch);
    // Sent again (the leader heard no answer): already made, so a success that changes
    // nothing.
    let version = image.version;
    run(
        &mut image,
        alter(BrokerId(0), p.leader_epoch, ids(&[0, 1, 2]), ids(&[0, 1])),
    )
    .unwrap();
    assert_eq!((state(&image).isr, image.version), (ids(&[0, 1]), version));
    // A stale view of the ISR, another broker, or an old epoch: refused.
    for op in [
        alter(BrokerId(0), p.leader_epoch, ids(&[0, 1, 2]), ids(&[0])),
        alter(BrokerId(1), p.leader_epoch, ids(&[0, 1]), ids(&[1])),
        alter(
            BrokerId(0),
            LeaderEpoch(p.leader_epoch.get() - 1),
            ids(&[0, 1]),
            ids(&[0]),
        ),
    ] {
        assert!(matches!(
            run(&mut image, op),
            Err(MetaError::StalePartitionState(_))
        ));
    }
    // Not a replica, no leader, duplicates: refused.
    for new in [ids(&[0, 1, 7]), ids(&[1]), ids(&[0, 0])] {
        assert!(matches!(
            run(
                &mut image,
                alter(BrokerId(0), p.leader_epoch, ids(&[0, 1]), new)
            ),
            Err(MetaError::InvalidRequest(_))
        ));
    }
    // A fenced broker cannot join; once live, it can, in replica order.
    run(
        &mut image,
        ControllerOp::ControlledShutdown {
            broker_id: BrokerId(2),
        },
    )
    .unwrap();
    assert!(matches!(
        run(
            &mut image,
            alter(BrokerId(0), p.leader_epoch, ids(&[0, 1]), ids(&[2, 0, 1]))
        ),
        Err(MetaError::IneligibleReplica(_))
    ));
    run(
        &mut image,
        ControllerOp::Heartbeat {
            broker_id: BrokerId(2),
        },
    )
    .unwrap();
    run(
        &mut image,
        alter(BrokerId(0), p.leader_epoch, ids(&[1, 0]), ids(&[2, 0, 1])),
    )
    .unwrap();
    assert_eq!(state(&image).isr, ids(&[0, 1, 2]));
}

#[test]
fn reassignments_copy_then_complete_or_cancel() {
    let mut image = MetadataImage::default();
    for b in 0..4 {
        register(&mut image, BrokerId(b));
    }
    let request = CreateTopic {
        name: "t".into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: vec![(0, ids(&[0, 1])), (1, ids(&[2, 3]))],
        ..Default::default()
    };
    run(&mut image, create(request, false)).unwrap();
    let state = |image: &MetadataImage, p: i32| image.topic("t").unwrap().partitions[&p].clone();
    let topic_id = image.topic("t").unwrap().topic_id;
    let move_to = |p: i32, target: Option<Vec<BrokerId>>| ControllerOp::AlterReassignments {
        partitions: vec![("t".into(), p, target)],
        keep_replication_factor: false,
    };
    let answers = |outcome: Outcome| match outcome {
        Outcome::Reassignments(r) => r.into_iter().map(|e| e.error).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };

    // Move p0 from [0, 1] to [2, 1]: 2 joins and copies; 0 leaves later.
    assert_eq!(
        answers(run(&mut image, move_to(0, Some(ids(&[2, 1])))).unwrap()),
        vec![None]
    );
    let p = state(&image, 0);
    assert_eq!(
        (
            p.replicas.clone(),
            p.adding_replicas.clone(),
            p.removing_replicas.clone()
        ),
        (ids(&[2, 1, 0]), ids(&[2]), ids(&[0]))
    );
    assert_eq!((p.leader, p.isr.clone()), (Some(BrokerId(0)), ids(&[0, 1])));
    // Once 2 is in sync the move completes: 0 leaves, and leadership moves off it.
    run(
        &mut image,
        ControllerOp::AlterPartition {
            broker_id: BrokerId(0),
            topic_id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            current_isr: ids(&[0, 1]),
            new_isr: ids(&[0, 1, 2]),
        },
    )
    .unwrap();
    let done = state(&image, 0);
    assert_eq!(
        (done.replicas.clone(), done.isr.clone()),
        (ids(&[2, 1]), ids(&[2, 1]))
    );
    assert!(!done.reassigning());
    // The first target replica in sync takes over (the active controller's reconcile
    // then keeps it: it is the preferred replica).
    assert_eq!(done.leader, Some(BrokerId(2)), "{done:?}");
    assert!(done.leader_epoch > p.leader_epoch);

    // Cancelling a move goes back to the replicas before it (as a set: like KRaft, the
    // image keeps the target's order during a move, not the old one).
    run(&mut image, move_to(1, Some(ids(&[0, 3])))).unwrap();
    assert!(state(&image, 1).reassigning());
    run(&mut image, move_to(1, None)).unwrap();
    let back = state(&image, 1);
    let mut replicas = back.replicas.clone();
    replicas.sort_unstable();
    assert_eq!((replicas, back.reassigning()), (ids(&[2, 3]), false));
    // Nothing to cancel, bad targets, unknown partitions: refused one by one.
    let refused = answers(
        run(
            &mut image,
            ControllerOp::AlterReassignments {
                partitions: vec![
                    ("t".into(), 1, None),
                    ("t".into(), 1, Some(ids(&[3, 3]))),
                    ("t".into(), 1, Some(ids(&[9]))),
                    ("t".into(), 7, Some(ids(&[1]))),
                    ("t".into(), 1, Some(ids(&[3]))),
                ],
                keep_replication_factor: true,
            },
        )
        .unwrap(),
    );
    assert!(matches!(
        refused[0],
        Some(MetaError::NoReassignmentInProgress(_))
    ));
    assert!(matches!(
        refused[1],
        Some(MetaError::InvalidReplicaAssignment(_))
    ));
    assert!(matches!(
        refused[2],
        Some(MetaError::InvalidReplicaAssignment(_))
    ));
    assert!(matches!(refused[3], Some(MetaError::UnknownPartition(_))));
    assert!(matches!(
        refused[4],
        Some(MetaError::InvalidReplicationFactor(_))
    ));
    // A new order of the same replicas takes effect at once.
    run(&mut image, move_to(1, Some(ids(&[3, 2])))).unwrap();
    assert_eq!(state(&image, 1).replicas, ids(&[3, 2]));
    assert!(!state(&image, 1).reassigning());

    // A new target over a move in progress starts from every current replica: the one the
    // first move added, now the only one in sync and leading, stays until the new target
    // is in sync.
    run(&mut image, move_to(1, Some(ids(&[0, 1])))).unwrap();
    set_partition(&mut image, "t", 1, &ids(&[0]), Some(BrokerId(0)));
    run(&mut image, move_to(1, Some(ids(&[2, 3])))).unwrap();
    let p = state(&image, 1);
    assert_eq!(
        (p.leader, p.isr.clone()),
        (Some(BrokerId(0)), ids(&[0])),
        "{p:?}"
    );
    assert_eq!(p.replicas, ids(&[2, 3, 0, 1]));
    assert_eq!(p.removing_replicas, ids(&[0, 1]));
}

#[test]
fn bootstrap_credentials_apply_once_and_alterations_replace_and_remove() {
    use crate::scram::{ScramCredential, ScramMechanism::*};
    let cred = |b: u8| ScramCredential {
        salt: vec![b],
        stored_key: vec![b],
        server_key: vec![b],
        iterations: 4096,
    };
    let mut image = MetadataImage::default();
    let boot = |c| ControllerOp::BootstrapScramCredentials {
        credentials: vec![("admin".into(), Sha256, c)],
    };
    run(&mut image, boot(cred(1))).unwrap();
    assert_eq!(image.scram[&("admin".into(), Sha256)], cred(1));
    // Deleted since: a later start's --add-scram does not bring it back.
    run(
        &mut image,
        ControllerOp::AlterScramCredentials {
            upsertions: vec![("bob".into(), Sha512, cred(2))],
            deletions: vec![("admin".into(), Sha256)],
        },
    )
    .unwrap();
    run(&mut image, boot(cred(3))).unwrap();
    assert!(!image.scram.contains_key(&("admin".into(), Sha256)));
    assert_eq!(image.scram[&("bob".into(), Sha512)], cred(2));
    // And a snapshot keeps both the credentials and the mark.
    let mut copy = MetadataImage::default();
    for r in image.to_records() {
        copy.apply(&r);
    }
    assert_eq!(copy.scram, image.scram);
    assert!(copy.scram_bootstrapped);
}
