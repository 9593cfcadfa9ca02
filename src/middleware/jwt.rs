//! `jwt` (Chihaya's JWT pre-hook): an announce must carry a JSON Web
//! Token in its `jwt` parameter (HTTP query, or the query of UDP BEP 41
//! URL data), signed by a key of the configured JWK Set, issued by
//! `issuer` for `audience`, with an `infohash` claim equal to the lowercase
//! hex of the announced infohash. Scrapes are not checked.
//!
//! Beyond Chihaya: `exp` and `nbf` are enforced when present, ES256 (and
//! the other asymmetric JWS algorithms) as well as RS256, and keys arrive
//! without locks (`jwk_set.rs`).

use super::hook::{AnnounceContext, Hook, Refusal};
use super::jwk_set::{KeySet, Subscription};
use super::params::param;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const NAME: &str = "jwt";

pub const MISSING: &str = "unapproved request: missing jwt";
pub const INVALID: &str = "unapproved request: invalid jwt";

/// Tokens longer than this are refused unread.
const MAX_TOKEN: usize = 8 << 10;

/// Seconds of clock difference allowed on `exp` and `nbf`.
pub const LEEWAY: f64 = 60.0;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub issuer: String,
    pub audience: String,
    pub jwk_set_url: String,
    #[serde(with = "crate::config::duration")]
    pub jwk_set_update_interval: Duration,
}

impl Options {
    pub fn check(&self) -> Result<(), String> {
        if self.jwk_set_update_interval.is_zero() {
            return Err("jwk_set_update_interval: must be more than 0".into());
        }
        if !(self.jwk_set_url.starts_with("http://") || self.jwk_set_url.starts_with("https://")) {
            return Err(format!(
                "jwk_set_url: {:?} is not an http:// or https:// URL",
                self.jwk_set_url
            ));
        }
        Ok(())
    }
}

/// One shard's instance.
pub struct Jwt {
    issuer: String,
    audience: String,
    keys: Arc<KeySet>,
    /// Newer sets from the fetch thread; `None` once stopped.
    updates: Option<Subscription>,
}

/// Why a token was refused (debug logs only).
#[derive(Debug, PartialEq, Eq)]
pub enum Invalid {
    TooLong,
    NotUtf8,
    Malformed(String),
    NoKid,
    UnknownKid(String),
    Signature(String),
    Issuer,
    Audience,
    InfoHash,
    Expired,
    NotYetValid,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<Audience>,
    infohash: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Jwt {
    pub fn new(options: &Options, subscription: Subscription) -> Self {
        Self {
            issuer: options.issuer.clone(),
            audience: options.audience.clone(),
            keys: subscription.current.clone(),
            updates: Some(subscription),
        }
    }

    /// An instance with fixed keys (tests).
    pub fn with_keys(options: &Options, keys: KeySet) -> Self {
        Self {
            issuer: options.issuer.clone(),
            audience: options.audience.clone(),
            keys: Arc::new(keys),
            updates: None,
        }
    }

    /// Checks `token` for an announce of `info_hash` at `now` (seconds
    /// since the epoch).
    pub fn validate(&self, token: &[u8], info_hash: &[u8; 20], now: f64) -> Result<(), Invalid> {
        if token.len() > MAX_TOKEN {
            return Err(Invalid::TooLong);
        }
        let token = std::str::from_utf8(token).map_err(|_| Invalid::NotUtf8)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| Invalid::Malformed(e.to_string()))?;
        let kid = header.kid.ok_or(Invalid::NoKid)?;
        let key = self.keys.get(&kid).ok_or(Invalid::UnknownKid(kid))?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &key.validation)
            .map_err(|e| Invalid::Signature(e.to_string()))?
            .claims;
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(Invalid::Issuer);
        }
        let audience = match &claims.aud {
            Some(Audience::One(a)) => *a == self.audience,
            Some(Audience::Many(list)) => list.contains(&self.audience),
            None => false,
        };
        if !audience {
            return Err(Invalid::Audience);
        }
        if claims.infohash.as_deref().map(str::as_bytes) != Some(&hex(info_hash)[..]) {
            return Err(Invalid::InfoHash);
        }
        if claims.exp.is_some_and(|exp| now >= exp + LEEWAY) {
            return Err(Invalid::Expired);
        }
        if claims.nbf.is_some_and(|nbf| now + LEEWAY < nbf) {
            return Err(Invalid::NotYetValid);
        }
        Ok(())
    }
}

fn hex(bytes: &[u8; 20]) -> [u8; 40] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0; 40];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    out
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Hook for Jwt {
    fn name(&self) -> &'static str {
        NAME
    }

    fn stop(&mut self) {
        self.updates = None;
    }

    fn wants_params(&self) -> bool {
        true
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        if let Some(keys) = self.updates.as_ref().and_then(Subscription::newest) {
            self.keys = keys;
        }
        let Some(token) = param(ctx.announce, b"jwt") else {
            return Err(Refusal::new(MISSING));
        };
        self.validate(&token, &ctx.announce.info_hash, now())
            .map_err(|why| {
                tracing::debug!("jwt refused: {why:?}");
                Refusal::new(INVALID)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::json;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");
    const IH: [u8; 20] = [0xab; 20];

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{name}")).unwrap()
    }

    fn options() -> Options {
        Options {
            issuer: "https://issuer.example".into(),
            audience: "shoal".into(),
            jwk_set_url: "http://127.0.0.1:1/jwks.json".into(),
            jwk_set_update_interval: Duration::from_secs(60),
        }
    }

    fn hook() -> Jwt {
        Jwt::with_keys(&options(), KeySet::parse(&fixture("jwks.json")).unwrap())
    }

    fn claims() -> serde_json::Value {
        json!({"iss": "https://issuer.example", "aud": ["other", "shoal"], "infohash": "ab".repeat(20)})
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &serde_json::Value) -> String {
        let key = match alg {
            Algorithm::RS256 | Algorithm::PS256 => {
                EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap()
            }
            Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture("ec.pem")).unwrap(),
            _ => EncodingKey::from_secret(b"a shared secret"),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(Into::into);
        encode(&header, claims, &key).unwrap()
    }

    fn check(token: &str) -> Result<(), Invalid> {
        hook().validate(token.as_bytes(), &IH, now())
    }

    #[test]
    fn the_fixture_set_has_both_keys() {
        let set = KeySet::parse(&fixture("jwks.json")).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.get("test-rsa").is_some() && set.get("test-ec").is_some());
    }

    #[test]
    fn valid_tokens_of_both_algorithms_pass() {
        assert_eq!(
            check(&sign(Algorithm::RS256, Some("test-rsa"), &claims())),
            Ok(())
        );
        assert_eq!(
            check(&sign(Algorithm::ES256, Some("test-ec"), &claims())),
            Ok(())
        );
        let mut c = claims();
        c["aud"] = json!("shoal");
        assert_eq!(
            check(&sign(Algorithm::RS256, Some("test-rsa"), &c)),
            Ok(()),
            "aud as a string"
        );
    }

    #[test]
    fn wrong_claims_are_invalid() {
        let with = |key: &str, value: serde_json::Value| {
            let mut c = claims();
            c[key] = value;
            check(&sign(Algorithm::RS256, Some("test-rsa"), &c))
        };
        assert_eq!(
            with("iss", json!("https://elsewhere")),
            Err(Invalid::Issuer)
        );
        assert_eq!(with("aud", json!(["other"])), Err(Invalid::Audience));
        assert_eq!(with("aud", json!("other")), Err(Invalid::Audience));
        assert_eq!(
            with("infohash", json!("cd".repeat(20))),
            Err(Invalid::InfoHash)
        );
        assert_eq!(
            with("infohash", json!("AB".repeat(20))),
            Err(Invalid::InfoHash),
            "lowercase hex only"
        );
        assert!(
            matches!(with("infohash", json!(5)), Err(Invalid::Signature(_))),
            "a number is no string"
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(
            check(&sign(Algorithm::RS256, Some("test-rsa"), &c)),
            Err(Invalid::Issuer)
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            check(&sign(Algorithm::RS256, Some("test-rsa"), &c)),
            Err(Invalid::Audience)
        );
        let mut c = claims();
        c.as_object_mut().unwrap().remove("infohash");
        assert_eq!(
            check(&sign(Algorithm::RS256, Some("test-rsa"), &c)),
            Err(Invalid::InfoHash)
        );
    }

    #[test]
    fn exp_and_nbf_are_enforced_when_present() {
        let t = now();
        let with = |key: &str, at: f64| {
            let mut c = claims();
            c[key] = json!(at as u64);
            check(&sign(Algorithm::ES256, Some("test-ec"), &c))
        };
        assert_eq!(with("exp", t + 600.0), Ok(()));
        assert_eq!(with("exp", t - 3600.0), Err(Invalid::Expired));
        assert_eq!(with("nbf", t - 600.0), Ok(()));
        assert_eq!(with("nbf", t + 3600.0), Err(Invalid::NotYetValid));
    }

    #[test]
    fn kids_and_algorithms_must_match_the_key_set() {
        let c = claims();
        assert_eq!(
            check(&sign(Algorithm::RS256, None, &c)),
            Err(Invalid::NoKid)
        );
        assert_eq!(
            check(&sign(Algorithm::RS256, Some("gone"), &c)),
            Err(Invalid::UnknownKid("gone".into()))
        );
        // The RSA key's JWK says RS256: PS256 with it is refused.
        assert!(matches!(
            check(&sign(Algorithm::PS256, Some("test-rsa"), &c)),
            Err(Invalid::Signature(_))
        ));
        // HMAC under a public key's kid (the classic confusion) is refused.
        assert!(matches!(
            check(&sign(Algorithm::HS256, Some("test-rsa"), &c)),
            Err(Invalid::Signature(_))
        ));
        // A token signed by the RSA key but naming the EC key's kid.
        let mut token = sign(Algorithm::RS256, Some("test-rsa"), &c);
        let forged = sign(Algorithm::RS256, Some("test-ec"), &c);
        let sig = token.rsplit('.').next().unwrap().to_string();
        token = format!("{}.{sig}", forged.rsplit_once('.').unwrap().0);
        assert!(matches!(check(&token), Err(Invalid::Signature(_))));
        // A flipped signature byte.
        let good = sign(Algorithm::ES256, Some("test-ec"), &c);
        let (head, sig) = good.rsplit_once('.').unwrap();
        let flipped: String = sig.chars().rev().collect();
        assert!(matches!(
            check(&format!("{head}.{flipped}")),
            Err(Invalid::Signature(_))
        ));
        // alg none.
        let none = format!(
            "{}.{}.",
            base64url(br#"{"alg":"none","kid":"test-rsa"}"#),
            base64url(c.to_string().as_bytes())
        );
        assert!(check(&none).is_err());
    }

    #[test]
    fn garbage_of_any_size_is_just_invalid() {
        let h = hook();
        let mut rng = fastrand::Rng::with_seed(7);
        for len in [
            0,
            1,
            2,
            3,
            10,
            100,
            1000,
            5000,
            MAX_TOKEN,
            MAX_TOKEN + 1,
            1 << 20,
        ] {
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            assert!(h.validate(&bytes, &IH, now()).is_err());
            let dotted: Vec<u8> = (0..len)
                .map(|_| *rng.choice(b"ab.-_=eyJ0").unwrap())
                .collect();
            assert!(h.validate(&dotted, &IH, now()).is_err());
        }
        for token in ["..", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", "\u{0}.\u{0}.\u{0}"] {
            assert!(h.validate(token.as_bytes(), &IH, now()).is_err(), "{token}");
        }
    }

    #[test]
    fn unusable_keys_are_skipped_not_fatal() {
        let set = KeySet::parse(
            br#"{"keys": [
                {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
                {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
                {"kty": "EC", "kid": "bad", "crv": "P-256", "x": "!!", "y": "??"},
                {"kty": "what", "kid": "odd"},
                {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
                {"kty": "RSA", "kid": "ok", "n": "AQAB", "e": "AQAB"}
            ]}"#,
        )
        .unwrap();
        assert!(set.get("ok").is_some());
        assert!(
            set.get("secret").is_none() && set.get("odd").is_none() && set.get("enc").is_none()
        );
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(b"not json").is_err());
    }

    #[test]
    fn options_are_checked() {
        let mut o = options();
        assert!(o.check().is_ok());
        o.jwk_set_update_interval = Duration::ZERO;
        assert!(o
            .check()
            .unwrap_err()
            .starts_with("jwk_set_update_interval"));
        let mut o = options();
        o.jwk_set_url = "ftp://x".into();
        assert!(o.check().unwrap_err().starts_with("jwk_set_url"));
    }

    fn base64url(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }
}
