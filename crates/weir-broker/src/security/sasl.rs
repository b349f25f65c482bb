//! SASL mechanisms on the server side, sans-IO: each takes the client's tokens and the
//! credentials it asks for, and answers with the next token, success, or failure.
//!
//! - SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka speaks them: no channel
//!   binding, an optional authorization id that must name the user itself, and no extensions
//!   (Kafka's `tokenauth` for delegation tokens is refused).
//! - PLAIN (RFC 4616), checked against the user's SCRAM credential: the password is salted and
//!   hashed as SCRAM would and compared with the stored key, so no password is stored anywhere.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use weir_meta::scram::{ScramCredential, ScramMechanism};

/// A mechanism this broker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }

    pub fn from_name(s: &str) -> Option<Mechanism> {
        if s.trim().eq_ignore_ascii_case("PLAIN") {
            return Some(Mechanism::Plain);
        }
        ScramMechanism::from_name(s).map(Mechanism::Scram)
    }
}

/// What one client token led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this token and wait for the next.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send `token` (possibly empty) as the last answer.
    Done { user: String, token: Vec<u8> },
    /// Refused; the reason is for the log, not the client.
    Failed(String),
}

/// One authentication in progress.
#[derive(Debug)]
pub struct Exchange {
    mechanism: Mechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    Start,
    /// SCRAM: the server-first message was sent.
    SentFirst {
        user: String,
        credential: ScramCredential,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Over,
}

impl Exchange {
    pub fn new(mechanism: Mechanism) -> Exchange {
        Exchange {
            mechanism,
            state: State::Start,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Takes the client's next token. `credential` finds a user's credential for a mechanism;
    /// `nonce` makes the server's part of a SCRAM nonce (printable, no commas).
    pub fn step(
        &mut self,
        token: &[u8],
        credential: impl Fn(&str, ScramMechanism) -> Option<ScramCredential>,
        nonce: impl FnOnce() -> String,
    ) -> Step {
        let state = std::mem::replace(&mut self.state, State::Over);
        match (self.mechanism, state) {
            (Mechanism::Plain, State::Start) => plain(token, credential),
            (Mechanism::Scram(m), State::Start) => {
                match client_first(m, token, credential, nonce) {
                    Ok((state, answer)) => {
                        self.state = state;
                        Step::Continue(answer)
                    }
                    Err(why) => Step::Failed(why),
                }
            }
            (
                Mechanism::Scram(m),
                State::SentFirst {
                    user,
                    credential,
                    client_first_bare,
                    server_first,
                    nonce,
                },
            ) => client_final(
                m,
                token,
                &user,
                &credential,
                &client_first_bare,
                &server_first,
                &nonce,
            ),
            (_, _) => Step::Failed("a token after the exchange ended".into()),
        }
    }
}

fn utf8(token: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(token).map_err(|_| "the token is not UTF-8".to_string())
}

/// RFC 5802's `saslname`: `=2C` is a comma and `=3D` an equals sign; nothing else may follow `=`.
fn sasl_name(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3).unwrap_or_default();
        match escape {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return Err(format!("bad escape in the user name {s:?}")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn client_first(
    m: ScramMechanism,
    token: &[u8],
    credential: impl Fn(&str, ScramMechanism) -> Option<ScramCredential>,
    nonce: impl FnOnce() -> String,
) -> Result<(State, Vec<u8>), String> {
    let message = utf8(token)?;
    // gs2-header: "n," (no channel binding) or "y,"; "p=" asks for binding, which Kafka has not.
    let (binding, rest) = message
        .split_once(',')
        .ok_or("the client-first message has no GS2 header")?;
    if binding != "n" && binding != "y" {
        return Err("channel binding is not supported".into());
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or("the client-first message has no GS2 header")?;
    let mut user = None;
    let mut client_nonce = None;
    for (i, attr) in bare.split(',').enumerate() {
        match attr.split_once('=') {
            Some(("n", v)) if i == 0 => user = Some(sasl_name(v)?),
            Some(("r", v)) if i == 1 => client_nonce = Some(v.to_string()),
            Some(("m", _)) if i == 0 => return Err("SCRAM extension 'm' is not supported".into()),
            Some((k, _)) if i >= 2 => {
                return Err(format!("SCRAM extension {k:?} is not supported"))
            }
            _ => return Err(format!("malformed client-first message attribute {attr:?}")),
        }
    }
    let user = user.ok_or("the client-first message names no user")?;
    let client_nonce = client_nonce.ok_or("the client-first message has no nonce")?;
    if user.is_empty() || client_nonce.is_empty() {
        return Err("empty user name or nonce".into());
    }
    if let Some(a) = authzid.strip_prefix("a=") {
        if sasl_name(a)? != user {
            return Err(format!("user {user:?} may not act as {a:?}"));
        }
    } else if !authzid.is_empty() {
        return Err("malformed authorization id".into());
    }
    let credential = credential(&user, m)
        .ok_or_else(|| format!("user {user:?} has no {} credential", m.name()))?;
    let nonce = format!("{client_nonce}{}", nonce());
    let server_first = format!(
        "r={nonce},s={},i={}",
        BASE64.encode(&credential.salt),
        credential.iterations
    );
    let answer = server_first.clone().into_bytes();
    Ok((
        State::SentFirst {
            user,
            credential,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
        },
        answer,
    ))
}

#[allow(clippy::too_many_arguments)]
fn client_final(
    m: ScramMechanism,
    token: &[u8],
    user: &str,
    credential: &ScramCredential,
    client_first_bare: &str,
    server_first: &str,
    nonce: &str,
) -> Step {
    let check = || -> Result<Vec<u8>, String> {
        let message = utf8(token)?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or("the client-final message has no proof")?;
        let mut attrs = without_proof.split(',');
        let binding = attrs.next().unwrap_or_default();
        // "biws" is base64 of "n,,"; with an authorization id the header differs, so the
        // binding is checked only for being base64 of a GS2 header without binding data.
        let header = binding
            .strip_prefix("c=")
            .and_then(|b| BASE64.decode(b).ok())
            .ok_or("the client-final message has no channel binding attribute")?;
        if !(header.starts_with(b"n,") || header.starts_with(b"y,")) {
            return Err("channel binding is not supported".into());
        }
        // The agreed nonce; librdkafka before 2.1 sends its own part again in front of it
        // (Kafka accepts any nonce that ends with the agreed one; this takes just those two).
        let client_part = client_first_bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .unwrap_or_default();
        match attrs.next().and_then(|r| r.strip_prefix("r=")) {
            Some(r)
                if r == nonce
                    || r.strip_prefix(client_part)
                        .is_some_and(|rest| !client_part.is_empty() && rest == nonce) => {}
            _ => return Err("the client-final message's nonce is not the one agreed".into()),
        }
        if attrs.next().is_some() {
            return Err("SCRAM extensions are not supported".into());
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| "the proof is not base64".to_string())?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac(m, &credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err("the proof has the wrong length".into());
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !bool::from(hash(m, &client_key).ct_eq(&credential.stored_key)) {
            return Err(format!("wrong password for user {user:?}"));
        }
        let server_signature = hmac(m, &credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    };
    match check() {
        Ok(token) => Step::Done {
            user: user.to_string(),
            token,
        },
        Err(why) => Step::Failed(why),
    }
}

/// PLAIN: `authzid NUL authcid NUL password`, checked against the SCRAM credential (SHA-512
/// first). Salting runs PBKDF2, thousands of HMACs: callers run it off the async workers.
fn plain(
    token: &[u8],
    credential: impl Fn(&str, ScramMechanism) -> Option<ScramCredential>,
) -> Step {
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Step::Failed("a PLAIN token is authzid NUL user NUL password".into());
    };
    let (Ok(authzid), Ok(user)) = (utf8(authzid), utf8(user)) else {
        return Step::Failed("the PLAIN user name is not UTF-8".into());
    };
    if !authzid.is_empty() && authzid != user {
        return Step::Failed(format!("user {user:?} may not act as {authzid:?}"));
    }
    let found = [ScramMechanism::Sha512, ScramMechanism::Sha256]
        .into_iter()
        .find_map(|m| credential(user, m).map(|c| (m, c)));
    let Some((m, c)) = found else {
        return Step::Failed(format!("user {user:?} has no SCRAM credential"));
    };
    let (stored, _) = keys(m, password, &c.salt, c.iterations);
    if bool::from(stored.ct_eq(&c.stored_key)) {
        Step::Done {
            user: user.to_string(),
            token: Vec::new(),
        }
    } else {
        Step::Failed(format!("wrong password for user {user:?}"))
    }
}

/// A new credential for `password`: RFC 5802's stored and server keys under `salt`.
pub fn credential(
    m: ScramMechanism,
    password: &[u8],
    salt: Vec<u8>,
    iterations: i32,
) -> ScramCredential {
    let (stored_key, server_key) = keys(m, password, &salt, iterations);
    ScramCredential {
        salt,
        stored_key,
        server_key,
        iterations,
    }
}

/// A credential from a password already salted by the client (AlterUserScramCredentials).
pub fn credential_from_salted(
    m: ScramMechanism,
    salted: &[u8],
    salt: Vec<u8>,
    iterations: i32,
) -> ScramCredential {
    let (stored_key, server_key) = keys_from_salted(m, salted);
    ScramCredential {
        salt,
        stored_key,
        server_key,
        iterations,
    }
}

fn keys(m: ScramMechanism, password: &[u8], salt: &[u8], iterations: i32) -> (Vec<u8>, Vec<u8>) {
    let rounds = iterations.max(1) as u32;
    let salted = match m {
        ScramMechanism::Sha256 => {
            pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, rounds).to_vec()
        }
        ScramMechanism::Sha512 => {
            pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, rounds).to_vec()
        }
    };
    keys_from_salted(m, &salted)
}

fn keys_from_salted(m: ScramMechanism, salted: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let client_key = hmac(m, salted, b"Client Key");
    (hash(m, &client_key), hmac(m, salted, b"Server Key"))
}

fn hmac(m: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    match m {
        ScramMechanism::Sha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        ScramMechanism::Sha512 => {
            let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(m: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match m {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// A server nonce: 24 random bytes, base64 (no commas).
pub fn random_nonce() -> String {
    use rand::Rng;
    // Letters and digits only, as Kafka's nonces are.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example: user "user", password "pencil".
    #[test]
    fn the_rfc_7677_exchange_passes_and_a_wrong_proof_fails() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = credential(ScramMechanism::Sha256, b"pencil", salt, 4096);
        let lookup =
            |u: &str, m| (u == "user" && m == ScramMechanism::Sha256).then(|| cred.clone());
        let server_nonce = || "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".to_string();
        let mut x = Exchange::new(Mechanism::Scram(ScramMechanism::Sha256));
        let first = x.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", lookup, server_nonce);
        assert_eq!(
            first,
            Step::Continue(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
                    .to_vec()
            )
        );
        let last = x.step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            lookup,
            server_nonce,
        );
        assert_eq!(
            last,
            Step::Done {
                user: "user".into(),
                token: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            }
        );
        // The same exchange with one bit of the proof flipped.
        let mut x = Exchange::new(Mechanism::Scram(ScramMechanism::Sha256));
        x.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", lookup, server_nonce);
        let bad = x.step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=",
            lookup,
            server_nonce,
        );
        assert!(
            matches!(bad, Step::Failed(ref why) if why.contains("wrong password")),
            "{bad:?}"
        );
        // Nothing follows an ended exchange.
        assert!(matches!(
            x.step(b"x", lookup, server_nonce),
            Step::Failed(_)
        ));
        // A nonce with anything but the client's own part in front of the agreed one (the
        // form librdkafka before 2.1 sends) is refused before the proof is looked at.
        let mut x = Exchange::new(Mechanism::Scram(ScramMechanism::Sha256));
        x.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", lookup, server_nonce);
        let other = x.step(
            b"c=biws,r=XrOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            lookup,
            server_nonce,
        );
        assert!(
            matches!(other, Step::Failed(ref why) if why.contains("nonce")),
            "{other:?}"
        );
        // librdkafka's doubled form reaches the proof (here computed for the RFC's message,
        // so it is the proof that fails).
        let mut x = Exchange::new(Mechanism::Scram(ScramMechanism::Sha256));
        x.step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", lookup, server_nonce);
        let doubled = x.step(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqOrOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            lookup,
            server_nonce,
        );
        assert!(
            matches!(doubled, Step::Failed(ref why) if why.contains("wrong password")),
            "{doubled:?}"
        );
    }

    #[test]
    fn bad_client_first_messages_fail() {
        let cred = credential(ScramMechanism::Sha512, b"pw", b"salt".to_vec(), 4096);
        let lookup = |u: &str, _| (u == "alice").then(|| cred.clone());
        for token in [
            &b"p=tls-unique,,n=alice,r=abc"[..],
            b"n,,n=bob,r=abc",
            b"n,a=bob,n=alice,r=abc",
            b"n,,n=alice",
            b"n,,n=alice,r=abc,tokenauth=true",
            b"n,,n=al=ZZice,r=abc",
            b"\xff\xfe",
            b"",
        ] {
            let mut x = Exchange::new(Mechanism::Scram(ScramMechanism::Sha512));
            let step = x.step(token, lookup, || "n".into());
            assert!(matches!(step, Step::Failed(_)), "{token:?}: {step:?}");
        }
        let mut x = Exchange::new(Mechanism::Scram(ScramMechanism::Sha512));
        let ok = x.step(b"n,a=alice,n=alice,r=abc", lookup, || "n".into());
        assert!(matches!(ok, Step::Continue(_)));
    }

    #[test]
    fn plain_checks_the_scram_credential() {
        let cred = credential(ScramMechanism::Sha256, b"secret", b"salty".to_vec(), 4096);
        let lookup =
            |u: &str, m| (u == "alice" && m == ScramMechanism::Sha256).then(|| cred.clone());
        let step = |token: &[u8]| Exchange::new(Mechanism::Plain).step(token, lookup, String::new);
        assert_eq!(
            step(b"\0alice\0secret"),
            Step::Done {
                user: "alice".into(),
                token: vec![]
            }
        );
        assert!(matches!(step(b"alice\0alice\0secret"), Step::Done { .. }));
        for bad in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0secret",
            b"bob\0alice\0secret",
            b"alice\0secret",
            b"\0a\0b\0c",
        ] {
            assert!(matches!(step(bad), Step::Failed(_)), "{bad:?}");
        }
    }

    #[test]
    fn a_client_salted_password_gives_the_same_credential() {
        let salt = b"0123456789".to_vec();
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(b"pw", &salt, 4096);
        assert_eq!(
            credential_from_salted(ScramMechanism::Sha512, &salted, salt.clone(), 4096),
            credential(ScramMechanism::Sha512, b"pw", salt, 4096)
        );
    }
}
