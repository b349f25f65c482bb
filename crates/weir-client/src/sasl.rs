//! The client side of SASL, run on a new connection right after ApiVersions: SaslHandshake v1,
//! then the mechanism's tokens in SaslAuthenticate requests. PLAIN sends the password;
//! SCRAM-SHA-256 and -512 (RFC 5802, 7677) prove it, and check the broker's proof in turn.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use sha2::{Digest, Sha256, Sha512};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::security::{Sasl, SaslMechanism};

/// Largest iteration count a broker may ask SCRAM for (Kafka's own bound).
const MAX_ITERATIONS: u32 = 16_384;

fn failed(why: impl Into<String>) -> Error {
    Error::Authentication(why.into())
}

/// Authenticates `conn` with `sasl`.
pub(crate) async fn authenticate(conn: &Connection, sasl: &Sasl) -> Result<()> {
    let handshake = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name()));
    let (answer, _) = conn.request(&handshake, 1).await?;
    if answer.error_code != 0 {
        let offered: Vec<String> = answer.mechanisms.iter().map(|m| m.to_string()).collect();
        return Err(failed(format!(
            "the broker does not offer {} (it offers {})",
            sasl.mechanism.name(),
            offered.join(", ")
        )));
    }
    match sasl.mechanism {
        SaslMechanism::Plain => {
            let token = format!("\0{}\0{}", sasl.username, sasl.password);
            step(conn, token.into_bytes()).await?;
            Ok(())
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => scram(conn, sasl).await,
    }
}

/// Sends one token; the broker's answer token.
async fn step(conn: &Connection, token: Vec<u8>) -> Result<Vec<u8>> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let (answer, _) = conn.request(&request, 2).await?;
    if answer.error_code != 0 {
        let message = answer
            .error_message
            .map(|m| m.to_string())
            .unwrap_or_default();
        return Err(failed(format!(
            "the broker refused the login (error {}): {message}",
            answer.error_code
        )));
    }
    Ok(answer.auth_bytes.to_vec())
}

async fn scram(conn: &Connection, sasl: &Sasl) -> Result<()> {
    let sha512 = sasl.mechanism == SaslMechanism::ScramSha512;
    let user = sasl.username.replace('=', "=3D").replace(',', "=2C");
    let client_nonce = {
        use rand::RngCore;
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        BASE64.encode(bytes)
    };
    let client_first_bare = format!("n={user},r={client_nonce}");
    let server_first = step(conn, format!("n,,{client_first_bare}").into_bytes()).await?;
    let server_first = String::from_utf8(server_first)
        .map_err(|_| failed("the broker's SCRAM message is not UTF-8"))?;
    let (mut nonce, mut salt, mut iterations) = (None, None, None);
    for attr in server_first.split(',') {
        match attr.split_once('=') {
            Some(("r", v)) => nonce = Some(v.to_string()),
            Some(("s", v)) => salt = BASE64.decode(v).ok(),
            Some(("i", v)) => iterations = v.parse::<u32>().ok(),
            _ => {}
        }
    }
    let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
        return Err(failed(format!(
            "a malformed SCRAM server-first message: {server_first}"
        )));
    };
    if !nonce.starts_with(&client_nonce) || iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(failed(
            "the broker's SCRAM nonce or iteration count is not acceptable",
        ));
    }
    let password = sasl.password.clone();
    let salted =
        tokio::task::spawn_blocking(move || salted_password(sha512, &password, &salt, iterations))
            .await
            .map_err(|e| failed(format!("salting the password failed: {e}")))?;
    let client_key = hmac(sha512, &salted, b"Client Key");
    let stored_key = hash(sha512, &client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(sha512, &stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(a, b)| a ^ b)
        .collect();
    let last = format!("{without_proof},p={}", BASE64.encode(proof));
    let server_final = step(conn, last.into_bytes()).await?;
    let server_key = hmac(sha512, &salted, b"Server Key");
    let expected = format!(
        "v={}",
        BASE64.encode(hmac(sha512, &server_key, auth_message.as_bytes()))
    );
    if server_final != expected.as_bytes() {
        return Err(failed(
            "the broker's SCRAM signature is wrong: it does not know the password",
        ));
    }
    Ok(())
}

/// RFC 5802's SaltedPassword: Hi(password, salt, iterations), PBKDF2 with HMAC-SHA-256 or -512.
pub(crate) fn salted_password(
    sha512: bool,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    if sha512 {
        pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password.as_bytes(), salt, iterations).to_vec()
    } else {
        pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations).to_vec()
    }
}

fn hmac(sha512: bool, key: &[u8], data: &[u8]) -> Vec<u8> {
    if sha512 {
        let Ok(mut mac) = <Hmac<Sha512> as Mac>::new_from_slice(key) else {
            return Vec::new();
        };
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    } else {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
            return Vec::new();
        };
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
}

fn hash(sha512: bool, data: &[u8]) -> Vec<u8> {
    if sha512 {
        Sha512::digest(data).to_vec()
    } else {
        Sha256::digest(data).to_vec()
    }
}
