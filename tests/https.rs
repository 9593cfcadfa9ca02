//! HTTPS (`http.tls`): announces and scrapes over TLS with keep-alive,
//! from a rustls client and from curl, with certificates made here
//! (rcgen); the certificate rotated by SIGHUP while a connection stays
//! up; a bad certificate refused at start and on reload; a bad handshake
//! dropped and counted.

mod common;

use common::bencode::Fields as _;
use common::http::{announce_target, encode, HttpClient};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType, SerialNumber};
use rustls::pki_types::CertificateDer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA made for the test, and leaf certificates it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "shoal test CA");
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A leaf for localhost and 127.0.0.1 with `serial`: its PEM, its key's
    /// PEM and its DER (what a client sees).
    fn leaf(&self, serial: u64) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("shoal test {serial}"));
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("shoal-https-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        // Replaced whole, as an operator's renewal tool would.
        let tmp = self.0.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

/// A directory holding `cert.pem` and `key.pem` of a leaf `ca` signs with
/// `serial`; the leaf's DER.
fn with_leaf(name: &str, ca: &Ca, serial: u64) -> (Dir, Vec<u8>) {
    let dir = Dir::new(name);
    let (cert, key, der) = ca.leaf(serial);
    dir.write("cert.pem", &cert);
    dir.write("key.pem", &key);
    (dir, der)
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tracker serving HTTPS on its own port, with `cert.pem`/`key.pem` of
/// `dir`; returns it and the HTTPS address.
fn start(dir: &Dir, config: &Path, extra: &[&str]) -> (Tracker, SocketAddr) {
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut sets = vec![
        format!("http.tls.listen=[\"{https}\"]"),
        format!("http.tls.cert={}", dir.0.join("cert.pem").display()),
        format!("http.tls.key={}", dir.0.join("key.pem").display()),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    (Tracker::start_with(config, &sets), https)
}

fn shipped_config() -> PathBuf {
    concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml").into()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A rustls client configuration that trusts `ca` only.
fn client_config(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A rustls client connection that trusts `ca`, handshaken.
fn tls_connect(addr: SocketAddr, ca: &Ca) -> Tls {
    let conn =
        rustls::ClientConnection::new(client_config(ca), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("a TLS handshake");
    }
    tls
}

/// The leaf certificate the server showed on `tls`.
fn served_cert(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().expect("a certificate")[0].to_vec()
}

fn metric(t: &Tracker, name: &str) -> f64 {
    let text = String::from_utf8(HttpClient::connect(t.metrics).get("/metrics").body).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn announces_and_scrapes_over_tls_with_keep_alive_share_the_plain_swarms() {
    let ca = Ca::new();
    let (dir, _) = with_leaf("basic", &ca, 1);
    let (t, https) = start(
        &dir,
        &shipped_config(),
        &["http.announce_routes=[\"/announce\", \"/:passkey/announce\"]"],
    );

    // 40 torrents over one TLS connection: both shards own some, so half
    // the announces are forwarded, as over plain HTTP.
    let mut c = HttpClient::over(tls_connect(https, &ca));
    let hashes: Vec<[u8; 20]> = (0..40).map(|_| random_hash()).collect();
    for (i, ih) in hashes.iter().enumerate() {
        let r = c.get(&announce_target(ih, &[i as u8; 20], 7000, 0, ""));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("keep-alive"));
        assert_eq!(r.bencode().int("complete"), 1, "announce {i}");
    }
    // A leecher over plain HTTP joins the first swarm and sees the TLS
    // announcer.
    let mut plain = HttpClient::connect(t.v4);
    let r = plain.get(&announce_target(&hashes[0], &[99; 20], 7001, 5, ""));
    assert_eq!(r.bencode().bytes("peers"), v4_peer(7000).as_slice());
    // A multi-torrent scrape on the same TLS connection.
    let query: String = hashes[..10]
        .iter()
        .map(|h| format!("info_hash={}&", encode(h)))
        .collect();
    let r = c.get(&format!("/scrape?{query}"));
    let files = r.bencode().dict("files");
    for (i, h) in hashes[..10].iter().enumerate() {
        let f = files.dict(h);
        let leechers = if i == 0 { 1 } else { 0 };
        assert_eq!(
            (f.int("complete"), f.int("incomplete")),
            (1, leechers),
            "torrent {i}"
        );
    }
    // Pipelined: two requests in one TLS write, two answers in order.
    let a = announce_target(&hashes[1], &[1; 20], 7000, 0, "");
    let b = format!("/scrape?info_hash={}", encode(&hashes[1]));
    c.send_raw(format!("GET {a} HTTP/1.1\r\n\r\nGET {b} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(c.read_response().unwrap().bencode().int("complete"), 1);
    assert!(c.read_response().unwrap().bencode().get(b"files").is_some());
    // A passkey route, as over plain HTTP.
    let passkeyed = announce_target(&hashes[2], &[2; 20], 7002, 5, "");
    let r = c.get(&format!("/0123abcd{passkeyed}"));
    assert_eq!(r.bencode().int("incomplete"), 1);
    // Unknown paths and bad requests answer as over plain HTTP.
    assert_eq!(c.get("/nowhere").status, 404);
    let r = c.get("/announce?info_hash=short");
    assert_eq!(r.status, 400);
    assert!(!r.failure().is_empty());
    t.stop();
}

#[test]
fn curl_announces_and_scrapes_over_one_kept_alive_tls_connection() {
    let ca = Ca::new();
    let (dir, _) = with_leaf("curl", &ca, 7);
    let ca_path = dir.write("ca.pem", &ca.cert.pem());
    let (t, https) = start(&dir, &shipped_config(), &[]);
    let ih = random_hash();
    let base = format!("https://localhost:{}", https.port());
    let announce = format!(
        "{base}{}",
        announce_target(&ih, &[3; 20], 6881, 0, "&compact=1")
    );
    let scrape = format!("{base}/scrape?info_hash={}", encode(&ih));
    let (a, s) = (dir.0.join("announce.out"), dir.0.join("scrape.out"));
    let out = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--cacert"])
        .arg(&ca_path)
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", https.port()),
        ])
        .args([
            "--write-out",
            "%{http_code} %{num_connects} %{ssl_verify_result}\n",
        ])
        .arg("--output")
        .arg(&a)
        .arg(&announce)
        .arg("--output")
        .arg(&s)
        .arg(&scrape)
        .output()
        .expect("curl runs (scripts/test installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {report} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Both answered 200 over one verified connection: the second reused it.
    assert_eq!(report.lines().collect::<Vec<_>>(), ["200 1 0", "200 0 0"]);
    let body = std::fs::read(&a).unwrap();
    let announced = common::bencode::parse(&body).unwrap();
    assert_eq!(announced.int("complete"), 1);
    let body = std::fs::read(&s).unwrap();
    let scraped = common::bencode::parse(&body).unwrap();
    assert_eq!(scraped.dict("files").dict(ih).int("complete"), 1);
    t.stop();
}

#[test]
fn sighup_rotates_the_certificate_for_new_connections_and_keeps_open_ones() {
    let ca = Ca::new();
    let (dir, der1) = with_leaf("rotate", &ca, 1);
    let (mut t, https) = start(&dir, &shipped_config(), &[]);

    let mut old = HttpClient::over(tls_connect(https, &ca));
    assert_eq!(served_cert(&old.stream), der1);
    let ih = random_hash();
    assert_eq!(
        old.get(&announce_target(&ih, &[1; 20], 7000, 0, ""))
            .bencode()
            .int("complete"),
        1
    );

    // Renewal: new files, then SIGHUP.
    let (cert2, key2, der2) = ca.leaf(2);
    dir.write("key.pem", &key2);
    dir.write("cert.pem", &cert2);
    t.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = tls_connect(https, &ca);
        if served_cert(&fresh) == der2 {
            break;
        }
        assert_eq!(served_cert(&fresh), der1, "neither certificate");
        assert!(Instant::now() < deadline, "the new certificate never came");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        metric(&t, "shoal_config_reloads_total{result=\"success\"}"),
        1.0
    );
    // The connection made before the reload still works, on its old
    // session.
    let r = old.get(&announce_target(&ih, &[2; 20], 7001, 5, ""));
    assert_eq!(r.bencode().int("complete"), 1);
    assert_eq!(r.bencode().int("incomplete"), 1);
    assert_eq!(served_cert(&old.stream), der1);

    // A broken certificate and a key of another certificate: each reload
    // is refused, counted, and the second certificate kept.
    dir.write(
        "cert.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    t.signal(libc::SIGHUP);
    wait_for(|| metric(&t, "shoal_config_reloads_total{result=\"failure\"}") == 1.0);
    let (cert3, _, _) = ca.leaf(3);
    dir.write("cert.pem", &cert3); // key.pem is still key 2's
    t.signal(libc::SIGHUP);
    wait_for(|| metric(&t, "shoal_config_reloads_total{result=\"failure\"}") == 2.0);
    assert_eq!(served_cert(&tls_connect(https, &ca)), der2);
    assert!(t.is_running());
    let r = old.get(&announce_target(&ih, &[1; 20], 7000, 0, ""));
    assert_eq!(r.status, 200);
    t.stop();
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_handshakes_are_dropped_and_counted_and_the_shard_serves_on() {
    let ca = Ca::new();
    let (dir, _) = with_leaf("bad", &ca, 1);
    let (t, https) = start(&dir, &shipped_config(), &["http.read_timeout=1s"]);
    // Plain HTTP to the TLS port: not a ClientHello.
    let mut plain = TcpStream::connect(https).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(b"GET /announce HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    // At most a TLS alert (content type 21), never an HTTP answer.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    // A client that connects and says nothing is dropped at the deadline.
    let mut silent = TcpStream::connect(https).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    assert_eq!(silent.read(&mut [0u8; 16]).unwrap_or(0), 0);
    assert!(started.elapsed() < Duration::from_secs(4));
    // A client that does not trust the certificate gives up mid-way.
    let other = Ca::new();
    let mut conn =
        rustls::ClientConnection::new(client_config(&other), "localhost".try_into().unwrap())
            .unwrap();
    let mut tcp = TcpStream::connect(https).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(conn.complete_io(&mut tcp).is_err() || conn.complete_io(&mut tcp).is_err());
    drop(tcp);
    wait_for(|| metric(&t, "shoal_tls_handshake_failures_total") >= 3.0);
    // And the next good client is served.
    let mut c = HttpClient::over(tls_connect(https, &ca));
    let ih = random_hash();
    let r = c.get(&announce_target(&ih, &[1; 20], 7000, 0, ""));
    assert_eq!(r.bencode().int("complete"), 1);
    t.stop();
}

/// `--check-config` (and a start) refuses a missing file, a file that is
/// not PEM and a key of another certificate, naming the key.
#[test]
fn bad_tls_files_refuse_the_start_naming_the_key() {
    let ca = Ca::new();
    let dir = Dir::new("refuse");
    let (cert, key, _) = ca.leaf(1);
    let (_, other_key, _) = ca.leaf(2);
    let cert = dir.write("cert.pem", &cert);
    let key = dir.write("key.pem", &key);
    let other_key = dir.write("other-key.pem", &other_key);
    let junk = dir.write("junk.pem", "hello\n");
    let missing = dir.0.join("missing.pem");
    let check = |cert: &Path, key: &Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args([
                "--config",
                shipped_config().to_str().unwrap(),
                "--check-config",
            ])
            .args(["--set", "runtime.cores=[0]"])
            .args(["--set", "http.tls.listen=[\"127.0.0.1:0\"]"])
            .arg("--set")
            .arg(format!("http.tls.cert={}", cert.display()))
            .arg("--set")
            .arg(format!("http.tls.key={}", key.display()))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(check(&cert, &key).0, Some(0));
    for (c, k, names) in [
        (&missing, &key, "http.tls.cert"),
        (&junk, &key, "http.tls.cert"),
        (&cert, &junk, "http.tls.key"),
        (&cert, &missing, "http.tls.key"),
        (&cert, &other_key, "http.tls.key"),
    ] {
        let (code, err) = check(c, k);
        assert_eq!(code, Some(2), "{c:?} {k:?}: {err}");
        assert!(err.contains(names), "{c:?} {k:?}: {err}");
    }
}

/// A large answer over TLS: a full scrape of 3,000 torrents (about
/// 270 KB in many TLS records), then the connection serves on.
#[test]
fn a_full_scrape_streams_over_tls() {
    let ca = Ca::new();
    let (dir, _) = with_leaf("full", &ca, 1);
    let token = "full-scrape-token-over-tls";
    let (t, https) = start(
        &dir,
        &shipped_config(),
        &[
            "http.full_scrape.enabled=true",
            &format!("http.full_scrape.token={token}"),
        ],
    );
    let udp = Client::connected(t.v4);
    let hashes: Vec<[u8; 20]> = (0..3000).map(|_| random_hash()).collect();
    for ih in &hashes {
        udp.announce(&Announce::new(*ih, 9000));
    }
    let mut c = HttpClient::over(tls_connect(https, &ca));
    let r = c.get(&format!("/scrape?token={token}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let answer = common::bencode::Dict::parse(&r.body).expect("one dictionary");
    let files = answer.dict("files");
    assert_eq!(files.len(), hashes.len());
    for ih in &hashes {
        assert_eq!(files.dict(ih).int("incomplete"), 1);
    }
    let r = c.get(&announce_target(&hashes[0], &[5; 20], 7000, 0, ""));
    assert_eq!(r.bencode().int("incomplete"), 1);
    t.stop();
}
