//! The `jwt` hook's keys: a JWK Set fetched over HTTP by a background
//! thread (never on a shard) and handed to each shard's hook instance
//! through its own bounded channel, so the request path takes no lock.
//!
//! The first fetch happens when the hook is built (start-up or reload)
//! and its failure refuses the configuration. Later failures keep the last
//! good set; they are counted (`fetch_failures`, shown in /metrics as
//! `shoal_jwk_fetch_failures_total`) and logged once per outage. The
//! thread ends when the hook's maker and every instance are gone.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// A fetch gives up after this long.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest JWK Set body read.
const MAX_BODY: u64 = 1 << 20;

static FETCH_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Refreshes that failed since start, over all `jwt` hooks.
pub fn fetch_failures() -> u64 {
    FETCH_FAILURES.load(Ordering::Relaxed)
}

/// One verification key and the signature check that goes with it.
pub struct Key {
    pub decoding: DecodingKey,
    /// Only the signature: the hook checks the claims itself.
    pub validation: Validation,
}

/// The keys of one fetch, by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, Key>,
}

impl KeySet {
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Reads a JWK Set document. A key that cannot be used (no `kid`, an
    /// unknown type, a symmetric or encryption key, bad numbers) is
    /// skipped with a log line; a document that is not a JWK Set is an
    /// error.
    pub fn parse(json: &[u8]) -> Result<KeySet, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document =
            serde_json::from_slice(json).map_err(|e| format!("not a JWK Set: {e}"))?;
        let mut keys = HashMap::new();
        for (i, raw) in doc.keys.into_iter().enumerate() {
            match key(raw) {
                Ok((kid, key)) => {
                    keys.insert(kid, key);
                }
                Err(e) => tracing::warn!("JWK Set: key {i} skipped: {e}"),
            }
        }
        Ok(KeySet { keys })
    }
}

fn key(raw: serde_json::Value) -> Result<(String, Key), String> {
    let jwk: Jwk = serde_json::from_value(raw).map_err(|e| e.to_string())?;
    let kid = jwk.common.key_id.clone().ok_or("no kid")?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err(format!("{kid}: an encryption key"));
    }
    let algorithms = match jwk.common.key_algorithm {
        Some(alg) => vec![signing_algorithm(alg).ok_or(format!("{kid}: alg {alg:?}"))?],
        None => family_algorithms(&jwk.algorithm).ok_or(format!("{kid}: unsupported key type"))?,
    };
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return Err(format!("{kid}: a symmetric key"));
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{kid}: {e}"))?;
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    Ok((
        kid,
        Key {
            decoding,
            validation,
        },
    ))
}

fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    use Algorithm as A;
    Some(match alg {
        KeyAlgorithm::RS256 => A::RS256,
        KeyAlgorithm::RS384 => A::RS384,
        KeyAlgorithm::RS512 => A::RS512,
        KeyAlgorithm::PS256 => A::PS256,
        KeyAlgorithm::PS384 => A::PS384,
        KeyAlgorithm::PS512 => A::PS512,
        KeyAlgorithm::ES256 => A::ES256,
        KeyAlgorithm::ES384 => A::ES384,
        KeyAlgorithm::EdDSA => A::EdDSA,
        _ => return None,
    })
}

/// The algorithms a key without `alg` may verify.
fn family_algorithms(params: &AlgorithmParameters) -> Option<Vec<Algorithm>> {
    use Algorithm as A;
    Some(match params {
        AlgorithmParameters::RSA(_) => {
            vec![A::RS256, A::RS384, A::RS512, A::PS256, A::PS384, A::PS512]
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![A::ES256],
            EllipticCurve::P384 => vec![A::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![A::EdDSA],
        AlgorithmParameters::OctetKey(_) => return None,
    })
}

/// One GET of the JWK Set, with a timeout.
pub fn fetch(url: &str) -> Result<KeySet, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| e.to_string())?;
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    KeySet::parse(&body)
}

/// What the fetch thread and the instances share.
#[derive(Default)]
struct Subscribers {
    /// Each live instance's channel, and its liveness token.
    senders: Vec<(SyncSender<Arc<KeySet>>, Weak<()>)>,
    /// The newest set, for instances made from now on.
    current: Arc<KeySet>,
}

/// The fetch thread of one configured hook, held by its maker.
pub struct Fetcher {
    shared: Arc<Mutex<Subscribers>>,
    /// The thread runs while this or an instance's token lives.
    alive: Arc<()>,
    thread: Thread,
}

/// What one instance holds: the newest keys come through `updates`.
pub struct Subscription {
    pub current: Arc<KeySet>,
    pub updates: Receiver<Arc<KeySet>>,
    alive: Arc<()>,
    thread: Thread,
}

impl Subscription {
    /// The newest set sent since the last call, if any.
    pub fn newest(&self) -> Option<Arc<KeySet>> {
        let mut newest = None;
        while let Ok(set) = self.updates.try_recv() {
            newest = Some(set);
        }
        newest
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The thread may be the last one waiting on this instance.
        drop(std::mem::take(&mut self.alive));
        self.thread.unpark();
    }
}

impl Fetcher {
    /// Fetches the set once (the error names nothing: the caller adds the
    /// key) and starts the thread that refreshes it every `interval`.
    pub fn start(url: String, interval: Duration) -> Result<Fetcher, String> {
        let first = fetch(&url).map_err(|e| format!("failed to fetch initial JWK Set: {e}"))?;
        tracing::info!("JWK Set from {url}: {} keys", first.len());
        let shared = Arc::new(Mutex::new(Subscribers {
            senders: Vec::new(),
            current: Arc::new(first),
        }));
        let alive = Arc::new(());
        let (state, token) = (shared.clone(), Arc::downgrade(&alive));
        let thread = std::thread::Builder::new()
            .name("jwk-fetch".into())
            .spawn(move || refresh_loop(&url, interval, &state, &token))
            .map_err(|e| format!("cannot start the JWK Set thread: {e}"))?
            .thread()
            .clone();
        Ok(Fetcher {
            shared,
            alive,
            thread,
        })
    }

    /// A new instance's keys and channel.
    pub fn subscribe(&self) -> Subscription {
        let (tx, rx) = sync_channel(1);
        let alive = Arc::new(());
        let mut shared = lock(&self.shared);
        shared.senders.push((tx, Arc::downgrade(&alive)));
        Subscription {
            current: shared.current.clone(),
            updates: rx,
            alive,
            thread: self.thread.clone(),
        }
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        drop(std::mem::take(&mut self.alive));
        self.thread.unpark();
    }
}

/// Sleeps `interval`, fetches, hands the set to every live instance;
/// ends when the fetcher and every instance are gone.
fn refresh_loop(url: &str, interval: Duration, shared: &Mutex<Subscribers>, fetcher: &Weak<()>) {
    let mut failing = false;
    loop {
        let deadline = Instant::now() + interval;
        loop {
            if !live(shared, fetcher) {
                tracing::debug!("JWK Set from {url}: no hook left, the refresh thread ends");
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            std::thread::park_timeout(deadline - now);
        }
        match fetch(url) {
            Ok(set) => {
                if failing {
                    tracing::info!("JWK Set from {url} fetched again: {} keys", set.len());
                    failing = false;
                }
                let set = Arc::new(set);
                let mut shared = lock(shared);
                shared.current = set.clone();
                shared.senders.retain(|(tx, alive)| {
                    // Full: the instance has not taken the last set yet;
                    // it gets the next refresh's.
                    alive.strong_count() > 0
                        && !matches!(tx.try_send(set.clone()), Err(TrySendError::Disconnected(_)))
                });
            }
            Err(e) => {
                FETCH_FAILURES.fetch_add(1, Ordering::Relaxed);
                if failing {
                    tracing::debug!("JWK Set from {url}: {e}");
                } else {
                    tracing::warn!("JWK Set from {url} not refreshed, keeping the last keys: {e}");
                    failing = true;
                }
            }
        }
    }
}

/// Whether the fetcher or any instance is still there (forgets the
/// instances that are gone).
fn live(shared: &Mutex<Subscribers>, fetcher: &Weak<()>) -> bool {
    let mut shared = lock(shared);
    shared.senders.retain(|(_, alive)| alive.strong_count() > 0);
    fetcher.strong_count() > 0 || !shared.senders.is_empty()
}

fn lock(shared: &Mutex<Subscribers>) -> std::sync::MutexGuard<'_, Subscribers> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}
