//! The SASL phase of a connection on a SASL_PLAINTEXT or SASL_SSL listener, before any other
//! request: ApiVersions, then SaslHandshake (v0 or v1) naming a mechanism, then its tokens, in
//! SaslAuthenticate requests (after a v1 handshake) or as bare size-prefixed tokens (after v0).
//!
//! With `connections.max.reauth.ms` (KIP-368), SaslAuthenticate v1+ tells the client how long
//! its session lasts; the client authenticates again on the same connection (SaslHandshake v1
//! and SaslAuthenticate, which this module also runs for an authenticated connection, and
//! which must name the same principal), and a connection whose session ran out is closed at
//! its next request.
//!
//! Anything else closes the connection: another request before authentication (with one log
//! line), SaslAuthenticate before a handshake (answered ILLEGAL_SASL_STATE first), an unknown
//! mechanism (answered UNSUPPORTED_SASL_MECHANISM with the ones offered), a frame over
//! [`MAX_AUTH_FRAME`], and a failed authentication, which is answered
//! SASL_AUTHENTICATION_FAILED after `connection.failed.authentication.delay.ms` and logged with
//! the client's address.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::transport::{Reader, Writer};
use crate::apis::{self, Decoded};
use crate::broker::Broker;
use crate::frame::{self, Body, Chunk, FrameReader};
use crate::security::sasl::{self, Exchange, Mechanism, Step};
use crate::security::{Principal, Session};

/// Largest frame read before authentication (Kafka's `sasl.server.max.receive.size`).
pub(crate) const MAX_AUTH_FRAME: usize = 524_288;

enum Phase {
    /// Waiting for a handshake.
    Start,
    /// A v1 handshake chose this mechanism: tokens come in SaslAuthenticate requests.
    Framed(Exchange),
    /// A v0 handshake chose it: tokens come bare.
    Bare(Exchange),
}

/// A successful authentication: who, and until when (with `connections.max.reauth.ms`).
pub(super) struct Authenticated {
    pub(super) principal: Principal,
    /// The mechanism used: a re-authentication must use it again.
    pub(super) mechanism: Mechanism,
    pub(super) expires: Option<tokio::time::Instant>,
}

/// Runs the SASL exchange; the principal once it succeeds, `None` when the connection must
/// close. `first` is a SaslHandshake already read on an authenticated connection: a
/// re-authentication, which must use a v1 handshake.
pub(super) async fn authenticate(
    broker: &Arc<Broker>,
    session: &Session,
    mut first: Option<frame::RequestFrame>,
    reader: &mut FrameReader,
    read: &mut Reader,
    write: &mut Writer,
) -> Option<Authenticated> {
    let peer = session.peer;
    let listener = &session.listener.name;
    let reauthenticating = first.is_some();
    let lifetime_ms = broker.config.sasl.max_reauth_ms;
    // The session runs from the moment the login succeeds, as the client counts it.
    let done = |user: &str, mechanism: Mechanism| Authenticated {
        principal: Principal::user(user),
        mechanism,
        expires: (lifetime_ms > 0).then(|| {
            let now = tokio::time::Instant::now();
            now.checked_add(Duration::from_millis(lifetime_ms))
                .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
        }),
    };
    let mut phase = Phase::Start;
    loop {
        let request = if let Some(request) = first.take() {
            request
        } else {
            let frame = match reader.next(read).await {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::debug!(%peer, %listener, error = %e, "connection closed during SASL authentication");
                    return None;
                }
            };
            if let Phase::Bare(exchange) = &mut phase {
                let (answer, user) = match run_step(broker, exchange, frame.to_vec()).await {
                    Step::Continue(token) => (token, None),
                    Step::Done { user, token } => (token, Some(user)),
                    Step::Failed(why) => {
                        failed(broker, session, &why).await;
                        return None;
                    }
                };
                let mut bytes = (answer.len() as u32).to_be_bytes().to_vec();
                bytes.extend_from_slice(&answer);
                write
                    .write_chunks(&[Chunk::Bytes(bytes.into())])
                    .await
                    .ok()?;
                if let Some(user) = user {
                    return Some(done(&user, exchange.mechanism()));
                }
                continue;
            }
            match frame::parse_request(frame) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(%peer, %listener, error = %e, "closing connection: malformed frame during SASL authentication");
                    return None;
                }
            }
        };
        let (api, version, correlation) = (
            request.api,
            request.header.request_api_version,
            request.header.correlation_id,
        );
        let mut body = request.body;
        let decoded = match apis::decode(api, version, &mut body) {
            Ok(Decoded::Request(r)) => r,
            Ok(Decoded::UnknownApiVersions) => {
                let answer =
                    ResponseKind::ApiVersions(crate::handlers::api_versions::unsupported());
                send(write, ApiKey::ApiVersions, 0, correlation, answer).await?;
                continue;
            }
            Ok(Decoded::LegacyOffsetCommit(_)) | Err(_) => {
                refuse_before_authentication(session, api, version);
                return None;
            }
        };
        match (decoded, &mut phase) {
            (RequestKind::ApiVersions(_), _) => {
                let answer = ResponseKind::ApiVersions(crate::handlers::api_versions::handle(
                    &broker.image(),
                ));
                send(write, api, version, correlation, answer).await?;
            }
            (RequestKind::SaslHandshake(_), Phase::Start) if reauthenticating && version == 0 => {
                tracing::warn!(%peer, %listener, "closing connection: re-authentication needs SaslHandshake v1");
                let answer = SaslHandshakeResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code());
                let _ = send(
                    write,
                    api,
                    version,
                    correlation,
                    ResponseKind::SaslHandshake(answer),
                )
                .await;
                return None;
            }
            (RequestKind::SaslHandshake(r), Phase::Start) => {
                let offered = &broker.config.sasl.mechanisms;
                let names = offered
                    .iter()
                    .map(|m| StrBytes::from_static_str(m.name()))
                    .collect();
                let chosen = Mechanism::from_name(&r.mechanism).filter(|m| offered.contains(m));
                let code = if chosen.is_some() {
                    0
                } else {
                    ResponseError::UnsupportedSaslMechanism.code()
                };
                let answer = SaslHandshakeResponse::default()
                    .with_error_code(code)
                    .with_mechanisms(names);
                send(
                    write,
                    api,
                    version,
                    correlation,
                    ResponseKind::SaslHandshake(answer),
                )
                .await?;
                let Some(m) = chosen else {
                    tracing::warn!(%peer, %listener, mechanism = %r.mechanism, "closing connection: SASL mechanism not offered");
                    return None;
                };
                phase = if version == 0 {
                    Phase::Bare(Exchange::new(m))
                } else {
                    Phase::Framed(Exchange::new(m))
                };
            }
            (RequestKind::SaslAuthenticate(r), Phase::Framed(exchange)) => {
                let step = run_step(broker, exchange, r.auth_bytes.to_vec()).await;
                let answer = SaslAuthenticateResponse::default();
                // The session's length, for clients that re-authenticate (v1+).
                let answer = match step {
                    Step::Done { .. } if version >= 1 => {
                        answer.with_session_lifetime_ms(lifetime_ms.min(i64::MAX as u64) as i64)
                    }
                    _ => answer,
                };
                let (answer, user) = match step {
                    Step::Continue(token) => (answer.with_auth_bytes(Bytes::from(token)), None),
                    Step::Done { user, token } => {
                        (answer.with_auth_bytes(Bytes::from(token)), Some(user))
                    }
                    Step::Failed(why) => {
                        failed(broker, session, &why).await;
                        let mechanism = exchange_name(&phase);
                        let answer = answer
                            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
                            ))));
                        let _ = send(
                            write,
                            api,
                            version,
                            correlation,
                            ResponseKind::SaslAuthenticate(answer),
                        )
                        .await;
                        return None;
                    }
                };
                send(
                    write,
                    api,
                    version,
                    correlation,
                    ResponseKind::SaslAuthenticate(answer),
                )
                .await?;
                if let Some(user) = user {
                    return Some(done(&user, exchange.mechanism()));
                }
            }
            (RequestKind::SaslAuthenticate(_), _) | (RequestKind::SaslHandshake(_), _) => {
                let why = "SaslAuthenticate before SaslHandshake, or a second SaslHandshake";
                tracing::warn!(%peer, %listener, "closing connection: {why}");
                let answer = ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default()
                        .with_error_code(ResponseError::IllegalSaslState.code())
                        .with_error_message(Some(StrBytes::from_static_str(why))),
                );
                if api == ApiKey::SaslAuthenticate {
                    let _ = send(write, api, version, correlation, answer).await;
                } else {
                    let answer = SaslHandshakeResponse::default()
                        .with_error_code(ResponseError::IllegalSaslState.code());
                    let _ = send(
                        write,
                        api,
                        version,
                        correlation,
                        ResponseKind::SaslHandshake(answer),
                    )
                    .await;
                }
                return None;
            }
            (_, _) => {
                refuse_before_authentication(session, api, version);
                return None;
            }
        }
    }
}

/// Logs a request that may not come before authentication; its connection closes.
fn refuse_before_authentication(session: &Session, api: ApiKey, version: i16) {
    tracing::warn!(peer = %session.peer, listener = %session.listener.name, ?api, version,
        "closing connection: a request other than ApiVersions, SaslHandshake or SaslAuthenticate before authentication");
}

fn exchange_name(phase: &Phase) -> &'static str {
    match phase {
        Phase::Framed(x) | Phase::Bare(x) => x.mechanism().name(),
        Phase::Start => "",
    }
}

/// PLAIN logins salting their password at once, over the whole broker: each costs thousands of
/// HMACs, which unauthenticated clients must not be able to pile up.
static PLAIN_HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// How long a PLAIN login waits for its turn to salt before it fails.
const PLAIN_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// One step of the exchange, off the async workers (PLAIN salts the password: thousands of HMACs).
async fn run_step(broker: &Arc<Broker>, exchange: &mut Exchange, token: Vec<u8>) -> Step {
    let _turn = if exchange.mechanism() == Mechanism::Plain {
        match tokio::time::timeout(PLAIN_QUEUE_WAIT, PLAIN_HASHING.acquire()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => return Step::Failed("too many PLAIN logins at once".into()),
        }
    } else {
        None
    };
    let image = broker.image();
    let mut owned = std::mem::replace(exchange, Exchange::new(exchange.mechanism()));
    let done = tokio::task::spawn_blocking(move || {
        let step = owned.step(
            &token,
            |user, m| image.scram.get(&(user.to_string(), m)).cloned(),
            sasl::random_nonce,
        );
        (owned, step)
    })
    .await;
    match done {
        Ok((owned, step)) => {
            *exchange = owned;
            step
        }
        Err(e) => Step::Failed(format!("the SASL step failed: {e}")),
    }
}

/// Logs a failed authentication and waits `connection.failed.authentication.delay.ms`, which
/// slows a client guessing passwords.
async fn failed(broker: &Arc<Broker>, session: &Session, why: &str) {
    tracing::warn!(peer = %session.peer, listener = %session.listener.name, "SASL authentication failed: {why}");
    tokio::time::sleep(Duration::from_millis(
        broker.config.sasl.failed_authentication_delay_ms,
    ))
    .await;
}

async fn send(
    write: &mut Writer,
    api: ApiKey,
    version: i16,
    correlation: i32,
    answer: ResponseKind,
) -> Option<()> {
    let chunks =
        frame::encode_response(api, version, correlation, Body::Message(Box::new(answer))).ok()?;
    write.write_chunks(&chunks).await.ok()?;
    Some(())
}
