//! The `jwt` hook end to end: the real binary fetches a JWK Set from a
//! small HTTP server in this test, checks tokens on HTTP and UDP (BEP 41
//! URL data) announces, refuses expired, wrong-audience and wrong-infohash
//! tokens, picks up a rotated key (an EC key made by the test), keeps its
//! keys through an outage of the key server (and counts the failed
//! refreshes in /metrics), and refuses to start when the key server cannot
//! be reached.

mod common;

use common::http::{announce_target, HttpClient};
use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "shoal";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}{name}")).unwrap()
}

/// Serves a JWK Set (the fixture one unless replaced) to every request
/// until dropped; then the port refuses connections.
struct KeyServer {
    addr: SocketAddr,
    body: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KeyServer {
    fn start() -> KeyServer {
        Self::serving(fixture("jwks.json"))
    }

    fn serving(set: Vec<u8>) -> KeyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let body = Arc::new(Mutex::new(set));
        let serving = body.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let body = serving.lock().unwrap().clone();
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(&body);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        KeyServer {
            addr,
            body,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// What the next requests get.
    fn replace(&self, set: Vec<u8>) {
        *self.body.lock().unwrap() = set;
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn hook_setting(url: &str) -> String {
    format!(
        "hooks.pre=[{{name: jwt, options: {{issuer: \"{ISSUER}\", audience: {AUDIENCE}, jwk_set_url: \"{url}\", jwk_set_update_interval: 1s}}}}]"
    )
}

fn hex(ih: &[u8; 20]) -> String {
    ih.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fixture set with only the key `kid`.
fn fixture_set_with(kid: &str) -> Vec<u8> {
    let mut set: serde_json::Value = serde_json::from_slice(&fixture("jwks.json")).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] == kid);
    serde_json::to_vec(&set).unwrap()
}

/// A P-256 key made now: its signing key and a JWK Set of its public half.
fn new_ec_key(kid: &str) -> (EncodingKey, Vec<u8>) {
    use base64::Engine;
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    // An uncompressed point: 0x04, then x and y, 32 bytes each.
    let point = pair.public_key_raw();
    assert_eq!((point.len(), point[0]), (65, 4));
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let set = serde_json::json!({"keys": [{
        "kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
        "x": b64(&point[1..33]), "y": b64(&point[33..]),
    }]});
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    (key, serde_json::to_vec(&set).unwrap())
}

fn signed(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, key).unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(alg: Algorithm, ih: &[u8; 20]) -> String {
    let (key, kid) = match alg {
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(&fixture("ec.pem")).unwrap(),
            "test-ec",
        ),
        _ => (
            EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap(),
            "test-rsa",
        ),
    };
    let claims = serde_json::json!({"iss": ISSUER, "aud": [AUDIENCE], "infohash": hex(ih)});
    signed(alg, kid, &key, &claims)
}

fn http_announce(
    t: &Tracker,
    ih: &[u8; 20],
    port: u16,
    jwt: Option<&str>,
) -> common::http::Response {
    let extra = jwt.map_or(String::new(), |j| format!("&jwt={j}"));
    HttpClient::connect(t.v4).get(&announce_target(ih, &[b'j'; 20], port, 5, &extra))
}

/// An HTTP announce's answer without a failure.
fn accepted(r: &common::http::Response) {
    let v = r.bencode();
    assert!(
        v.get(b"failure reason".as_slice()).is_none() && v.get(b"interval".as_slice()).is_some(),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
}

/// A UDP announce with `url_data` as BEP 41 URL data options (255 bytes
/// each at most).
fn udp_announce(c: &Client, ih: &[u8; 20], port: u16, url_data: &[u8]) -> Vec<u8> {
    let mut p = c.announce_packet(&Announce::new(*ih, port), 77);
    for chunk in url_data.chunks(255) {
        p.push(2);
        p.push(chunk.len() as u8);
        p.extend_from_slice(chunk);
    }
    p.push(0);
    c.send(&p);
    c.recv().expect("an answer")
}

fn jwk_failures(t: &Tracker) -> Option<f64> {
    let text = HttpClient::connect(t.metrics).get("/metrics").body;
    String::from_utf8(text)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("shoal_jwk_fetch_failures_total "))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn tokens_are_checked_on_both_protocols_and_survive_a_key_outage() {
    let keys = KeyServer::start();
    let setting = hook_setting(&keys.url());
    let t = Tracker::start(&[setting.as_str()]);
    let ih = random_hash();

    // HTTP: RS256 and ES256 tokens accepted.
    for (alg, port) in [(Algorithm::RS256, 7001), (Algorithm::ES256, 7002)] {
        accepted(&http_announce(&t, &ih, port, Some(&token(alg, &ih))));
    }
    // Missing and wrong-infohash tokens refused.
    let r = http_announce(&t, &ih, 7003, None);
    assert_eq!(r.failure(), "unapproved request: missing jwt");
    let other = random_hash();
    let r = http_announce(&t, &ih, 7004, Some(&token(Algorithm::RS256, &other)));
    assert_eq!(r.failure(), "unapproved request: invalid jwt");

    // UDP: the token in URL data; without it, an error packet.
    let c = Client::connected(t.v4);
    let url_data = format!("/announce?jwt={}", token(Algorithm::RS256, &ih));
    let r = udp_announce(&c, &ih, 7005, url_data.as_bytes());
    assert_eq!(be32(&r[0..4]), 1, "{:?}", String::from_utf8_lossy(&r[8..]));
    let r = udp_announce(&c, &ih, 7006, b"/announce");
    assert_eq!(be32(&r[0..4]), 3);
    assert_eq!(&r[8..], b"unapproved request: missing jwt");
    let url_data = format!("/announce?jwt={}", token(Algorithm::ES256, &other));
    let r = udp_announce(&c, &ih, 7007, url_data.as_bytes());
    assert_eq!(be32(&r[0..4]), 3);
    assert_eq!(&r[8..], b"unapproved request: invalid jwt");
    assert_eq!(jwk_failures(&t), Some(0.0));

    // The key server goes away: refreshes fail, the keys stay.
    drop(keys);
    let deadline = Instant::now() + Duration::from_secs(10);
    while jwk_failures(&t).unwrap() < 1.0 {
        assert!(Instant::now() < deadline, "no failed refresh counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    accepted(&http_announce(
        &t,
        &ih,
        7008,
        Some(&token(Algorithm::ES256, &ih)),
    ));
    let url_data = format!("/announce?jwt={}", token(Algorithm::RS256, &ih));
    assert_eq!(
        be32(&udp_announce(&c, &ih, 7009, url_data.as_bytes())[0..4]),
        1
    );
}

#[test]
fn bad_claims_are_refused_and_a_rotated_key_is_picked_up() {
    let keys = KeyServer::serving(fixture_set_with("test-rsa"));
    let setting = hook_setting(&keys.url());
    let t = Tracker::start(&[setting.as_str()]);
    let ih = random_hash();
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa.pem")).unwrap();
    let claims = |aud: &str, exp: u64| serde_json::json!({"iss": ISSUER, "aud": [aud], "infohash": hex(&ih), "exp": exp});
    let rs256 = |c: &serde_json::Value| signed(Algorithm::RS256, "test-rsa", &rsa, c);

    let fresh = rs256(&claims(AUDIENCE, unix_now() + 3600));
    accepted(&http_announce(&t, &ih, 7101, Some(&fresh)));
    // Expired (well past the 60 s leeway) and for another audience.
    for bad in [
        rs256(&claims(AUDIENCE, unix_now() - 3600)),
        rs256(&claims("someone-else", unix_now() + 3600)),
    ] {
        let r = http_announce(&t, &ih, 7102, Some(&bad));
        assert_eq!(r.failure(), "unapproved request: invalid jwt");
        let c = Client::connected(t.v4);
        let r = udp_announce(&c, &ih, 7103, format!("/announce?jwt={bad}").as_bytes());
        assert_eq!(be32(&r[0..4]), 3);
        assert_eq!(&r[8..], b"unapproved request: invalid jwt");
    }

    // Rotation: the issuer replaces its RSA key by a new EC key.
    let (ec, set) = new_ec_key("rotated-ec");
    let rotated = signed(
        Algorithm::ES256,
        "rotated-ec",
        &ec,
        &claims(AUDIENCE, unix_now() + 3600),
    );
    let r = http_announce(&t, &ih, 7104, Some(&rotated));
    assert_eq!(
        r.failure(),
        "unapproved request: invalid jwt",
        "not known yet"
    );
    keys.replace(set);
    // The refresh interval is 1 s; give it a few.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_announce(&t, &ih, 7105, Some(&rotated));
        if r.bencode().get(b"failure reason".as_slice()).is_none() {
            accepted(&r);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated key was not picked up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = Client::connected(t.v4);
    let r = udp_announce(&c, &ih, 7106, format!("/announce?jwt={rotated}").as_bytes());
    assert_eq!(be32(&r[0..4]), 1, "{:?}", String::from_utf8_lossy(&r[8..]));
    // The old key left the set: its tokens no longer pass.
    let r = http_announce(&t, &ih, 7107, Some(&fresh));
    assert_eq!(r.failure(), "unapproved request: invalid jwt");
}

#[test]
fn an_unreachable_key_server_refuses_the_start() {
    // A port nothing listens on.
    let url = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks.json", l.local_addr().unwrap())
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["--config", "config.yaml", "--set", &hook_setting(&url)])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("hooks.pre[0].options.jwk_set_url: failed to fetch initial JWK Set"),
        "{err}"
    );
}
