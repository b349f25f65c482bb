//! Client quota enforcement (Kafka's `ClientQuotaManager`, KIP-219's throttling): produce and
//! fetch byte rates and request time, each against the quota that applies to the connection's
//! user and client id (`weir_meta::quotas::applicable`).
//!
//! Each quota keeps a virtual clock (the generic cell rate algorithm): recording `amount` moves
//! the clock on by `amount / rate` seconds, never from earlier than now. A client whose clock
//! runs more than [`BURST`] ahead of the real one is over its quota by that much, and is
//! throttled for the difference: its answer says how long (`throttle_time_ms`), and its
//! connection reads no further request until then. Over any span, a client that sends requests
//! smaller than [`MAX_THROTTLE`]'s worth of its quota gets its rate times the span, plus at
//! most one burst; debt beyond the longest throttle is forgotten, so one huge request costs
//! one long throttle, not hours of them.
//!
//! Sans-IO: every call takes the time; the handlers pass `Instant::now()`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_meta::quotas::{
    applicable, Quotas, CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE,
};

/// How far ahead of its quota a client may run before it is throttled: one second's worth.
pub(crate) const BURST: Duration = Duration::from_secs(1);

/// The longest throttle told to a client at once (Kafka caps it at its quota window, 11 s).
pub(crate) const MAX_THROTTLE: Duration = Duration::from_secs(10);

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Bytes of produce requests a second.
    Produce,
    /// Bytes of fetch answers a second.
    Fetch,
    /// Seconds of request handling a second (`request_percentage` / 100).
    Request,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Produce => PRODUCER_BYTE_RATE,
            Kind::Fetch => CONSUMER_BYTE_RATE,
            Kind::Request => REQUEST_PERCENTAGE,
        }
    }

    /// Units a second the quota's value allows.
    fn rate(self, value: f64) -> f64 {
        match self {
            Kind::Request => value / 100.0,
            Kind::Produce | Kind::Fetch => value,
        }
    }
}

/// Who a quota is kept for: the kind, and the user and client id as far as the entity the
/// quota is set on names them (a quota on a user is shared by all its client ids).
type Key = (Kind, Option<String>, Option<String>);

/// The connection a quota is asked about.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client<'a> {
    pub(crate) user: &'a str,
    pub(crate) client_id: &'a str,
}

#[derive(Debug, Default)]
pub(crate) struct QuotaManager {
    /// Each quota's virtual clock.
    clocks: Mutex<HashMap<Key, Instant>>,
    /// The number of clocks at which idle ones are next swept out.
    sweep_at: Mutex<usize>,
}

impl QuotaManager {
    /// The key and rate (units a second) of the quota of `kind` that applies to `client`.
    fn quota(quotas: &Quotas, kind: Kind, client: Client<'_>) -> Option<(Key, f64)> {
        let (entity, value) = applicable(quotas, client.user, client.client_id, kind.key())?;
        let key = (
            kind,
            entity.user.as_ref().map(|_| client.user.to_string()),
            entity
                .client_id
                .as_ref()
                .map(|_| client.client_id.to_string()),
        );
        Some((key, kind.rate(value)))
    }

    fn clocks(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Instant>> {
        self.clocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `amount` against `client`'s quota of `kind`; returns how long it must now wait
    /// (zero within its quota, or with no quota set).
    pub(crate) fn record(
        &self,
        quotas: &Quotas,
        kind: Kind,
        client: Client<'_>,
        amount: f64,
        now: Instant,
    ) -> Duration {
        let Some((key, rate)) = Self::quota(quotas, kind, client) else {
            return Duration::ZERO;
        };
        let mut clocks = self.clocks();
        self.sweep(&mut clocks, now);
        let clock = clocks.entry(key).or_insert(now);
        *clock = (*clock).max(now) + Duration::from_secs_f64((amount / rate).min(3600.0));
        // Debt past the longest throttle is forgotten (as Kafka's quota window forgets old
        // samples): a client that waits out a throttle is within its quota again.
        *clock = (*clock).min(now + BURST + MAX_THROTTLE);
        throttle(*clock, now)
    }

    /// How long `client` must wait now for its quota of `kind`, without counting anything.
    pub(crate) fn pending(
        &self,
        quotas: &Quotas,
        kind: Kind,
        client: Client<'_>,
        now: Instant,
    ) -> Duration {
        let Some((key, _)) = Self::quota(quotas, kind, client) else {
            return Duration::ZERO;
        };
        self.clocks()
            .get(&key)
            .map_or(Duration::ZERO, |clock| throttle(*clock, now))
    }

    /// The most `client` may get in one answer under its quota of `kind` (one burst), if it has
    /// one: a fetch is cut to this, so one answer never needs more than a burst.
    pub(crate) fn burst(quotas: &Quotas, kind: Kind, client: Client<'_>) -> Option<u64> {
        Self::quota(quotas, kind, client)
            .map(|(_, rate)| (rate * BURST.as_secs_f64()).max(1.0) as u64)
    }

    /// Drops the clocks of clients idle for a minute, when their number has doubled since.
    fn sweep(&self, clocks: &mut HashMap<Key, Instant>, now: Instant) {
        let mut sweep_at = self.sweep_at.lock().unwrap_or_else(|p| p.into_inner());
        if clocks.len() < (*sweep_at).max(64) {
            return;
        }
        clocks.retain(|_, clock| *clock + Duration::from_secs(60) > now);
        *sweep_at = clocks.len() * 2;
    }
}

fn throttle(clock: Instant, now: Instant) -> Duration {
    clock
        .saturating_duration_since(now)
        .saturating_sub(BURST)
        .min(MAX_THROTTLE)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use weir_meta::quotas::{EntityName, QuotaEntity};

    use super::*;

    fn quotas(entity: QuotaEntity, key: &str, value: f64) -> Quotas {
        BTreeMap::from([(entity, BTreeMap::from([(key.to_string(), value)]))])
    }

    const ALICE: Client<'static> = Client {
        user: "alice",
        client_id: "app",
    };

    #[test]
    fn a_client_over_its_byte_rate_waits_for_the_excess() {
        let q = quotas(
            QuotaEntity {
                user: None,
                client_id: Some(EntityName::Default),
            },
            PRODUCER_BYTE_RATE,
            1000.0,
        );
        let m = QuotaManager::default();
        let t0 = Instant::now();
        // One second's worth passes at once; the next 500 bytes put it half a second over.
        assert_eq!(
            m.record(&q, Kind::Produce, ALICE, 1000.0, t0),
            Duration::ZERO
        );
        let wait = m.record(&q, Kind::Produce, ALICE, 500.0, t0);
        assert_eq!(wait, Duration::from_millis(500));
        // Another client id has a clock of its own (the default applies to each).
        let bob = Client {
            user: "alice",
            client_id: "other",
        };
        assert_eq!(m.record(&q, Kind::Produce, bob, 1000.0, t0), Duration::ZERO);
        // After waiting, the same again passes; fetches are not limited by a produce quota.
        let later = t0 + wait;
        assert_eq!(m.pending(&q, Kind::Produce, ALICE, later), Duration::ZERO);
        assert_eq!(m.record(&q, Kind::Fetch, ALICE, 1e9, later), Duration::ZERO);
        // Sending at the quota's rate for ten seconds never waits.
        let mut now = later + Duration::from_secs(2);
        for _ in 0..100 {
            assert_eq!(
                m.record(&q, Kind::Produce, ALICE, 100.0, now),
                Duration::ZERO
            );
            now += Duration::from_millis(100);
        }
    }

    #[test]
    fn a_user_quota_is_shared_by_its_client_ids() {
        let q = quotas(
            QuotaEntity {
                user: Some(EntityName::Name("alice".into())),
                client_id: None,
            },
            CONSUMER_BYTE_RATE,
            100.0,
        );
        let m = QuotaManager::default();
        let t0 = Instant::now();
        let other = Client {
            user: "alice",
            client_id: "other",
        };
        assert_eq!(m.record(&q, Kind::Fetch, ALICE, 100.0, t0), Duration::ZERO);
        let wait = m.record(&q, Kind::Fetch, other, 100.0, t0);
        assert_eq!(wait, Duration::from_secs(1));
        assert_eq!(
            m.pending(&q, Kind::Fetch, ALICE, t0),
            Duration::from_secs(1)
        );
        assert_eq!(QuotaManager::burst(&q, Kind::Fetch, ALICE), Some(100));
        let stranger = Client {
            user: "bob",
            client_id: "app",
        };
        assert_eq!(QuotaManager::burst(&q, Kind::Fetch, stranger), None);
        assert_eq!(
            m.record(&q, Kind::Fetch, stranger, 1e12, t0),
            Duration::ZERO
        );
    }

    #[test]
    fn request_time_counts_against_a_percentage_and_throttles_are_capped() {
        let q = quotas(
            QuotaEntity {
                user: Some(EntityName::Default),
                client_id: None,
            },
            REQUEST_PERCENTAGE,
            10.0,
        );
        let m = QuotaManager::default();
        let t0 = Instant::now();
        // 10 % of a second a second: 0.3 s of handling is 3 s of quota, 2 s past the burst.
        let wait = m.record(&q, Kind::Request, ALICE, 0.3, t0);
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-6, "{wait:?}");
        let wait = m.record(&q, Kind::Request, ALICE, 100.0, t0);
        assert_eq!(wait, MAX_THROTTLE);
        // The debt past the cap is forgotten: once the throttle is waited out, it is over.
        let later = t0 + MAX_THROTTLE;
        assert_eq!(m.pending(&q, Kind::Request, ALICE, later), Duration::ZERO);
    }
}
