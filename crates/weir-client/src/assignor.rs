//! Partition assignors the group leader runs: Kafka's range, roundrobin and cooperative-sticky,
//! computing the same kind of plan as the Java client's assignors of those names, so a group can
//! mix Weir members with other clients' members.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// A topic and a partition number.
pub type TopicPartition = (String, i32);

/// What a member told the group when it joined: its topics, and (cooperative protocol) what it
/// owned in which generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemberSubscription {
    pub(crate) topics: Vec<String>,
    pub(crate) owned: Vec<TopicPartition>,
    /// The generation in which `owned` was assigned, -1 when unknown.
    pub(crate) generation: i32,
}

/// Decodes a member's consumer-protocol subscription (version prefix, then the struct). Owned
/// partitions come from v1+, the generation from v2+; an older member's generation is read from
/// sticky user data when it has some (a bare int32, or the KIP-341 previous-assignment struct).
pub(crate) fn decode_subscription(mut bytes: Bytes) -> MemberSubscription {
    if bytes.len() < 2 {
        return MemberSubscription {
            generation: -1,
            ..Default::default()
        };
    }
    let version = bytes.get_i16().clamp(0, 3);
    let Ok(sub) = ConsumerProtocolSubscription::decode(&mut bytes, version) else {
        return MemberSubscription {
            generation: -1,
            ..Default::default()
        };
    };
    let mut generation = if version >= 2 { sub.generation_id } else { -1 };
    if version < 2 {
        if let Some(data) = &sub.user_data {
            generation = user_data_generation(data.clone()).unwrap_or(-1);
        }
    }
    MemberSubscription {
        topics: sub.topics.iter().map(|t| t.to_string()).collect(),
        owned: sub
            .owned_partitions
            .iter()
            .flat_map(|t| {
                let topic = t.topic.0.to_string();
                t.partitions.iter().map(move |p| (topic.clone(), *p))
            })
            .collect(),
        generation,
    }
}

/// The generation in sticky user data: Java's cooperative-sticky writes a bare int32; the
/// KIP-341 struct is an array of (topic, partitions) followed by an int32.
fn user_data_generation(mut data: Bytes) -> Option<i32> {
    if data.len() == 4 {
        return Some(data.get_i32());
    }
    if data.len() < 4 {
        return None;
    }
    let topics = data.get_i32();
    for _ in 0..topics.max(0) {
        if data.len() < 2 {
            return None;
        }
        let len = data.get_i16().max(0) as usize;
        if data.len() < len + 4 {
            return None;
        }
        data.advance(len);
        let n = data.get_i32().max(0) as usize;
        if data.len() < n.checked_mul(4)? {
            return None;
        }
        data.advance(n * 4);
    }
    (data.len() >= 4).then(|| data.get_i32())
}

type Plan = BTreeMap<String, Vec<TopicPartition>>;

fn empty_plan(members: &BTreeMap<String, MemberSubscription>) -> Plan {
    members.keys().map(|m| (m.clone(), Vec::new())).collect()
}

fn subscribed_topics(members: &BTreeMap<String, MemberSubscription>) -> BTreeSet<&String> {
    members.values().flat_map(|m| &m.topics).collect()
}

/// Kafka's RangeAssignor: per topic, consecutive ranges of partitions to members sorted by id.
pub(crate) fn assign_range(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &HashMap<String, i32>,
) -> Plan {
    let mut out = empty_plan(members);
    for topic in subscribed_topics(members) {
        let n = partitions.get(topic).copied().unwrap_or(0);
        let subscribed: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        let per = n / subscribed.len() as i32;
        let extra = n % subscribed.len() as i32;
        for (i, m) in subscribed.iter().enumerate() {
            let i = i as i32;
            let start = i * per + i.min(extra);
            let len = per + i32::from(i < extra);
            let list = out.entry((*m).clone()).or_default();
            list.extend((start..start + len).map(|p| (topic.clone(), p)));
        }
    }
    out
}

/// Kafka's RoundRobinAssignor: all partitions in order, dealt to subscribed members in turn.
pub(crate) fn assign_roundrobin(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &HashMap<String, i32>,
) -> Plan {
    let mut out = empty_plan(members);
    let ids: Vec<&String> = members.keys().collect();
    if ids.is_empty() {
        return out;
    }
    let mut next = 0usize;
    for topic in subscribed_topics(members) {
        for p in 0..partitions.get(topic).copied().unwrap_or(0) {
            for _ in 0..ids.len() {
                let m = ids[next % ids.len()];
                next += 1;
                if members[m].topics.contains(topic) {
                    out.entry(m.clone()).or_default().push((topic.clone(), p));
                    break;
                }
            }
        }
    }
    out
}

/// Kafka's cooperative-sticky assignor (KIP-429): a balanced plan that keeps every member's
/// valid owned partitions where balance allows, and withholds any partition that changes owner,
/// so its old owner revokes it first and a follow-up rebalance hands it over. A partition is
/// never assigned to one member while another still owns it.
///
/// An owned partition is valid when it exists, its owner is subscribed to its topic, and no
/// member claims it from a later generation (ties go to the member that sorts first).
pub(crate) fn assign_cooperative_sticky(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &HashMap<String, i32>,
) -> Plan {
    let exists = |(t, p): &TopicPartition| partitions.get(t).is_some_and(|n| *p >= 0 && *p < *n);
    // Who claims each partition, by highest generation, whether or not it still subscribes to
    // the topic: until it revokes, nobody else may be given the partition.
    let mut claimed: HashMap<TopicPartition, (i32, &String)> = HashMap::new();
    for (id, sub) in members {
        for tp in sub.owned.iter().filter(|tp| exists(tp)) {
            match claimed.get(tp) {
                Some((g, _)) if *g >= sub.generation => {}
                _ => {
                    claimed.insert(tp.clone(), (sub.generation, id));
                }
            }
        }
    }
    // The claims a member may keep: those of topics it still subscribes to.
    let previous: HashMap<TopicPartition, (i32, &String)> = claimed
        .iter()
        .filter(|(tp, (_, id))| members[*id].topics.contains(&tp.0))
        .map(|(tp, v)| (tp.clone(), *v))
        .collect();
    let mut plan = empty_plan(members);
    let mut sorted_previous: Vec<(&TopicPartition, &String)> =
        previous.iter().map(|(tp, (_, m))| (tp, *m)).collect();
    sorted_previous.sort();
    for (tp, m) in &sorted_previous {
        plan.entry((*m).clone()).or_default().push((*tp).clone());
    }
    // Unowned partitions go to the least-loaded eligible member.
    for topic in subscribed_topics(members) {
        for p in 0..partitions.get(topic).copied().unwrap_or(0) {
            let tp = (topic.clone(), p);
            if previous.contains_key(&tp) {
                continue;
            }
            let target = members
                .iter()
                .filter(|(_, s)| s.topics.contains(topic))
                .min_by_key(|(id, _)| (plan[*id].len(), (*id).clone()))
                .map(|(id, _)| id.clone());
            if let Some(id) = target {
                plan.entry(id).or_default().push(tp);
            }
        }
    }
    // Move partitions from the most loaded member to a less loaded eligible one until no member
    // holds two more than another that could take one of its partitions. Each move lowers the
    // sum of squared loads, so this ends.
    loop {
        // (gap, from, to, partition)
        let mut best: Option<(usize, &String, &String, &TopicPartition)> = None;
        for (from, owned) in &plan {
            for tp in owned.iter().rev() {
                for (to, sub) in members {
                    if to == from || !sub.topics.contains(&tp.0) {
                        continue;
                    }
                    let gap = owned.len().saturating_sub(plan[to].len());
                    if gap >= 2 && best.is_none_or(|(g, ..)| gap > g) {
                        best = Some((gap, from, to, tp));
                    }
                }
            }
        }
        let Some((_, from, to, tp)) = best else {
            break;
        };
        let (from, to, tp) = (from.clone(), to.clone(), tp.clone());
        if let Some(list) = plan.get_mut(&from) {
            list.retain(|x| *x != tp);
        }
        plan.entry(to).or_default().push(tp);
    }
    // Withhold partitions whose owner changes: the old owner must revoke them first.
    for (id, list) in plan.iter_mut() {
        list.retain(|tp| claimed.get(tp).is_none_or(|(_, owner)| *owner == id));
        list.sort();
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: Vec::new(),
            generation: -1,
        }
    }

    fn members(spec: &[(&str, &[&str])]) -> BTreeMap<String, MemberSubscription> {
        spec.iter()
            .map(|(m, ts)| (m.to_string(), member(ts)))
            .collect()
    }

    fn tps(topic: &str, ps: &[i32]) -> Vec<TopicPartition> {
        ps.iter().map(|p| (topic.to_string(), *p)).collect()
    }

    #[test]
    fn range_matches_kafka() {
        let m = members(&[("a", &["t"]), ("b", &["t"])]);
        let counts = HashMap::from([("t".to_string(), 5)]);
        let plan = assign_range(&m, &counts);
        assert_eq!(plan["a"], tps("t", &[0, 1, 2]));
        assert_eq!(plan["b"], tps("t", &[3, 4]));
        // More members than partitions: the extra ones get nothing.
        let m = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let plan = assign_range(&m, &HashMap::from([("t".to_string(), 2)]));
        assert_eq!(plan["c"], vec![]);
    }

    #[test]
    fn roundrobin_deals_in_turn() {
        let m = members(&[("a", &["t", "u"]), ("b", &["t", "u"])]);
        let counts = HashMap::from([("t".to_string(), 3), ("u".to_string(), 1)]);
        let plan = assign_roundrobin(&m, &counts);
        assert_eq!(plan["a"], tps("t", &[0, 2]));
        assert_eq!(plan["b"], [tps("t", &[1]), tps("u", &[0])].concat());
    }

    #[test]
    fn cooperative_sticky_hands_over_in_two_rounds() {
        let counts = HashMap::from([("t".to_string(), 4)]);
        let mut m = members(&[("a", &["t"])]);
        let first = assign_cooperative_sticky(&m, &counts);
        assert_eq!(first["a"], tps("t", &[0, 1, 2, 3]));
        // b joins; a still owns all four: b gets nothing yet, a keeps only its share.
        let a = m.get_mut("a").unwrap();
        a.owned = first["a"].clone();
        a.generation = 1;
        m.insert("b".into(), member(&["t"]));
        let second = assign_cooperative_sticky(&m, &counts);
        assert_eq!(second["a"].len(), 2);
        assert!(second["b"].is_empty(), "{second:?}");
        // a revoked two and rejoins: b takes them, a keeps its two.
        let a = m.get_mut("a").unwrap();
        a.owned = second["a"].clone();
        a.generation = 2;
        let third = assign_cooperative_sticky(&m, &counts);
        assert_eq!(third["a"], second["a"]);
        assert_eq!(third["b"].len(), 2);
    }

    #[test]
    fn a_partition_of_a_dropped_topic_waits_for_its_owner_to_revoke() {
        let counts = HashMap::from([("t".to_string(), 1), ("u".to_string(), 1)]);
        let mut m = members(&[("a", &["u"]), ("b", &["t"])]);
        let a = m.get_mut("a").unwrap();
        a.owned = vec![("t".into(), 0), ("u".into(), 0)];
        a.generation = 3;
        let plan = assign_cooperative_sticky(&m, &counts);
        // a no longer reads t: it must revoke t-0 before b may have it.
        assert_eq!(plan["a"], tps("u", &[0]));
        assert!(plan["b"].is_empty(), "{plan:?}");
        let a = m.get_mut("a").unwrap();
        a.owned = plan["a"].clone();
        let plan = assign_cooperative_sticky(&m, &counts);
        assert_eq!(plan["b"], tps("t", &[0]));
    }

    #[test]
    fn reads_generation_from_sticky_user_data() {
        assert_eq!(
            user_data_generation(Bytes::from_static(&[0, 0, 0, 7])),
            Some(7)
        );
        // One topic "t" with partitions [0, 1], generation 3.
        let kip341 = [
            0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 3,
        ];
        assert_eq!(
            user_data_generation(Bytes::copy_from_slice(&kip341)),
            Some(3)
        );
        assert_eq!(
            user_data_generation(Bytes::from_static(&[0, 0, 0, 9, 1])),
            None
        );
    }

    fn arb_group(
    ) -> impl Strategy<Value = (BTreeMap<String, MemberSubscription>, HashMap<String, i32>)> {
        let topics = prop::collection::vec(1..8i32, 1..4);
        (topics, 1..6usize, any::<u64>()).prop_map(|(counts, n_members, seed)| {
            let counts: HashMap<String, i32> = counts
                .into_iter()
                .enumerate()
                .map(|(i, n)| (format!("t{i}"), n))
                .collect();
            let names: Vec<String> = {
                let mut v: Vec<String> = counts.keys().cloned().collect();
                v.sort();
                v
            };
            let mut bits = seed;
            let mut members = BTreeMap::new();
            for m in 0..n_members {
                let mut topics: Vec<String> = names
                    .iter()
                    .filter(|_| {
                        bits = bits.rotate_left(7) ^ 0x9e37_79b9;
                        bits & 3 != 0
                    })
                    .cloned()
                    .collect();
                if topics.is_empty() {
                    topics.push(names[m % names.len()].clone());
                }
                members.insert(
                    format!("m{m}"),
                    MemberSubscription {
                        topics,
                        owned: Vec::new(),
                        generation: -1,
                    },
                );
            }
            (members, counts)
        })
    }

    /// One rebalance round: checks safety, then every member owns what it was given.
    fn round(
        members: &mut BTreeMap<String, MemberSubscription>,
        counts: &HashMap<String, i32>,
        generation: i32,
    ) -> std::result::Result<Plan, TestCaseError> {
        let plan = assign_cooperative_sticky(members, counts);
        let mut seen = BTreeSet::new();
        for (id, list) in &plan {
            for tp in list {
                prop_assert!(seen.insert(tp.clone()), "{tp:?} assigned twice");
                prop_assert!(members[id].topics.contains(&tp.0));
                for (other, sub) in members.iter() {
                    prop_assert!(
                        other == id || !sub.owned.contains(tp),
                        "{tp:?} given to {id} while {other} owns it"
                    );
                }
            }
        }
        for (id, list) in &plan {
            if let Some(m) = members.get_mut(id) {
                m.owned = list.clone();
                m.generation = generation;
            }
        }
        Ok(plan)
    }

    proptest! {
        /// A group whose members join and leave between rebalances, each member owning what the
        /// last round gave it: no partition ever goes to two members, or to one member while
        /// another owns it, only subscribers get partitions, and once the group stops changing
        /// the plan settles with every partition assigned (balanced to within one when all
        /// members subscribe to the same topics).
        #[test]
        fn cooperative_sticky_is_safe_and_settles(
            (pool, counts) in arb_group(),
            events in prop::collection::vec(0..4u8, 0..10),
        ) {
            let mut waiting: Vec<(String, MemberSubscription)> = pool.into_iter().collect();
            let mut members = BTreeMap::new();
            if let Some((id, m)) = waiting.pop() {
                members.insert(id, m);
            }
            let mut generation = 0;
            for event in events {
                match event {
                    0 => {
                        if let Some((id, m)) = waiting.pop() {
                            members.insert(id, m);
                        }
                    }
                    1 if members.len() > 1 => {
                        let id = members.keys().next().cloned().unwrap_or_default();
                        members.remove(&id);
                    }
                    2 => {
                        // The last member changes its topics (keeping what it owns until told).
                        let mut names: Vec<&String> = counts.keys().collect();
                        names.sort();
                        if let Some(m) = members.values_mut().next_back() {
                            if m.topics.len() > 1 {
                                m.topics.remove(0);
                            } else if let Some(t) = names.iter().find(|t| !m.topics.contains(t)) {
                                m.topics.push((*t).clone());
                            }
                        }
                    }
                    _ => {}
                }
                round(&mut members, &counts, generation)?;
                generation += 1;
            }
            let all: BTreeSet<TopicPartition> = counts
                .iter()
                .filter(|(t, _)| members.values().any(|m| m.topics.contains(t)))
                .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
                .collect();
            let mut last = Plan::new();
            for _ in 0..4 {
                last = round(&mut members, &counts, generation)?;
                generation += 1;
            }
            let assigned: BTreeSet<TopicPartition> = last.values().flatten().cloned().collect();
            prop_assert_eq!(&assigned, &all, "not every partition assigned after settling");
            let again = assign_cooperative_sticky(&members, &counts);
            prop_assert_eq!(&again, &last, "the plan keeps changing");
            let first = members.values().next().map(|m| m.topics.clone());
            if members.values().all(|m| Some(&m.topics) == first.as_ref()) {
                let loads: Vec<usize> = last.values().map(Vec::len).collect();
                let (lo, hi) = (loads.iter().min(), loads.iter().max());
                prop_assert!(hi.zip(lo).is_none_or(|(h, l)| h - l <= 1), "{loads:?}");
            }
        }
    }
}
