//! The server-side assignors of KIP-848 (`group.consumer.assignors`): `uniform` and `range`.
//!
//! Both are pure functions of the members' subscriptions, the subscribed topics' partition
//! counts and the previous target assignment. `uniform` is sticky: a partition stays with its
//! previous member while that member still subscribes to its topic and is not above its share;
//! the rest go to the least loaded eligible member, then partitions move from the most to the
//! least loaded until no move narrows the spread (every member within one of another among those
//! that can take the same partitions). `range` gives each member a contiguous range of every
//! topic it subscribes to, as Kafka's range assignor, so topics with equal partition counts are
//! co-partitioned.

use std::collections::{BTreeMap, BTreeSet};

use super::Assignment;

/// The assignors this broker knows, in Kafka's default order (the first is the default).
pub(crate) const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// `group.consumer.assignors` parsed: the assignors offered, in order (the first is the
/// default); `None` for an empty list or a name not in [`ASSIGNORS`].
pub(crate) fn parse_assignors(list: &str) -> Option<&'static [&'static str]> {
    const ORDERS: [&[&str]; 4] = [
        &["uniform", "range"],
        &["range", "uniform"],
        &["uniform"],
        &["range"],
    ];
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    ORDERS.into_iter().find(|o| *o == names.as_slice())
}

/// What an assignor sees of one member.
#[derive(Debug, Clone)]
pub(crate) struct MemberSpec<'a> {
    pub(crate) member_id: &'a str,
    /// Sorts members for `range` (Kafka sorts by instance id when members have one).
    pub(crate) instance_id: Option<&'a str>,
    pub(crate) topics: &'a BTreeSet<String>,
}

/// Runs `name` (one of [`ASSIGNORS`]); `partitions` holds the partition count of every
/// subscribed topic that exists.
pub(crate) fn assign(
    name: &str,
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<String, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions, previous),
    }
}

fn range(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for (topic, &count) in partitions {
        let mut subscribers: Vec<&MemberSpec<'_>> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        subscribers.sort_by_key(|m| (m.instance_id.unwrap_or(m.member_id), m.member_id));
        let n = subscribers.len() as i32;
        let (each, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subscribers.iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            if take == 0 {
                continue;
            }
            let set: BTreeSet<i32> = (next..next + take).collect();
            next += take;
            if let Some(a) = out.get_mut(m.member_id) {
                a.insert(topic.clone(), set);
            }
        }
    }
    out
}

fn uniform(
    members: &[MemberSpec<'_>],
    partitions: &BTreeMap<String, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut owner: BTreeMap<(&str, i32), usize> = BTreeMap::new();
    let mut load = vec![0usize; members.len()];
    let eligible = |m: usize, topic: &str| members[m].topics.contains(topic);
    let total: usize = partitions
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.topics.contains(*t)))
        .map(|(_, &c)| c.max(0) as usize)
        .sum();
    // A member keeps at most its share: the partitions spread evenly over everyone.
    let share = if members.is_empty() {
        0
    } else {
        total.div_ceil(members.len())
    };
    for (m, spec) in members.iter().enumerate() {
        let Some(prev) = previous.get(spec.member_id) else {
            continue;
        };
        for (topic, parts) in prev {
            let Some((name, &count)) = partitions.get_key_value(topic) else {
                continue;
            };
            if !eligible(m, topic) {
                continue;
            }
            for &p in parts {
                if p < count && load[m] < share && !owner.contains_key(&(name.as_str(), p)) {
                    owner.insert((name.as_str(), p), m);
                    load[m] += 1;
                }
            }
        }
    }
    for (topic, &count) in partitions {
        for p in 0..count.max(0) {
            if owner.contains_key(&(topic.as_str(), p)) {
                continue;
            }
            let best = (0..members.len())
                .filter(|&m| eligible(m, topic))
                .min_by_key(|&m| (load[m], members[m].member_id));
            if let Some(m) = best {
                owner.insert((topic.as_str(), p), m);
                load[m] += 1;
            }
        }
    }
    // Moves from the most loaded member to a less loaded one that can take the partition,
    // while that narrows the spread (subscriptions that differ may leave some unevenness).
    loop {
        let mut moved = false;
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|&m| std::cmp::Reverse(load[m]));
        'from: for &from in &order {
            let mine: Vec<(&str, i32)> = owner
                .iter()
                .filter(|(_, &m)| m == from)
                .map(|(&k, _)| k)
                .collect();
            for (topic, p) in mine.into_iter().rev() {
                let to = (0..members.len())
                    .filter(|&m| eligible(m, topic) && load[m] + 1 < load[from])
                    .min_by_key(|&m| (load[m], members[m].member_id));
                if let Some(to) = to {
                    owner.insert((topic, p), to);
                    load[from] -= 1;
                    load[to] += 1;
                    moved = true;
                    break 'from;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.to_string(), Assignment::new()))
        .collect();
    for ((topic, p), m) in owner {
        if let Some(a) = out.get_mut(members[m].member_id) {
            a.entry(topic.to_string()).or_default().insert(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn counts(a: &BTreeMap<String, Assignment>) -> Vec<usize> {
        a.values()
            .map(|t| t.values().map(BTreeSet::len).sum())
            .collect()
    }

    #[test]
    fn uniform_spreads_evenly_and_keeps_what_it_can() {
        let t = topics(&["a"]);
        let parts: BTreeMap<String, i32> = [("a".to_string(), 6)].into();
        let two = [
            MemberSpec {
                member_id: "m1",
                instance_id: None,
                topics: &t,
            },
            MemberSpec {
                member_id: "m2",
                instance_id: None,
                topics: &t,
            },
        ];
        let first = assign("uniform", &two, &parts, &BTreeMap::new());
        assert_eq!(counts(&first), vec![3, 3]);
        let mut three = two.to_vec();
        three.push(MemberSpec {
            member_id: "m3",
            instance_id: None,
            topics: &t,
        });
        let second = assign("uniform", &three, &parts, &first);
        assert_eq!(counts(&second), vec![2, 2, 2]);
        // Sticky: each old member keeps two of its three.
        for m in ["m1", "m2"] {
            let kept = second[m]["a"].intersection(&first[m]["a"]).count();
            assert_eq!(kept, 2, "{m}: {second:?} after {first:?}");
        }
        // Every partition exactly once.
        let all: Vec<i32> = second
            .values()
            .flat_map(|a| a["a"].iter().copied())
            .collect();
        let unique: BTreeSet<i32> = all.iter().copied().collect();
        assert_eq!((all.len(), unique.len()), (6, 6));
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let (ab, b) = (topics(&["a", "b"]), topics(&["b"]));
        let parts: BTreeMap<String, i32> = [("a".to_string(), 4), ("b".to_string(), 2)].into();
        let members = [
            MemberSpec {
                member_id: "m1",
                instance_id: None,
                topics: &ab,
            },
            MemberSpec {
                member_id: "m2",
                instance_id: None,
                topics: &b,
            },
        ];
        let out = assign("uniform", &members, &parts, &BTreeMap::new());
        assert!(!out["m2"].contains_key("a"));
        assert_eq!(out["m1"]["a"].len(), 4);
        assert_eq!(out["m2"]["b"].len(), 2);
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let t = topics(&["a", "b"]);
        let parts: BTreeMap<String, i32> = [("a".to_string(), 5), ("b".to_string(), 5)].into();
        let members = [
            MemberSpec {
                member_id: "m2",
                instance_id: None,
                topics: &t,
            },
            MemberSpec {
                member_id: "m1",
                instance_id: None,
                topics: &t,
            },
        ];
        let out = assign("range", &members, &parts, &BTreeMap::new());
        assert_eq!(out["m1"]["a"], [0, 1, 2].into());
        assert_eq!(out["m2"]["a"], [3, 4].into());
        assert_eq!(out["m1"]["b"], out["m1"]["a"]);
    }
}
