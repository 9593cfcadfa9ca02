//! Private mode end to end (`private.enabled`), against real MariaDB and
//! PostgreSQL servers the tests start with Gazelle's tables: passkeys over
//! HTTP and UDP (BEP 41 URL data), Ocelot's refusals, accounting written
//! exactly (freeleech, neutral, tokens, multipliers, snatches, torrent
//! counts, peer rows), the control endpoint, a database outage and a stop
//! while the database is down: nothing accounted is lost.

mod common;

use common::bencode::Fields;
use common::http::{announce_target, encode, HttpClient};
use common::mariadb::MariaDb;
use common::postgres::Postgres;
use common::sqlserver::SqlServer;
use common::*;
use std::time::{Duration, Instant};

const SITE_PASSWORD: &str = "SitePassword0123SitePassword0123";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn passkey(n: u32) -> String {
    format!("{n:0>32}")
}

fn add_user(site: &dyn SqlServer, id: u32, can_leech: bool, visible: bool, enabled: bool) {
    site.exec(&format!(
        "INSERT INTO users_main (ID, torrent_pass, can_leech, Visible, Enabled, IP, Uploaded, Downloaded) \
         VALUES ({id}, '{}', {}, '{}', '{}', '10.1.1.1', 0, 0)",
        passkey(id),
        u8::from(can_leech),
        u8::from(visible),
        u8::from(enabled)
    ));
}

fn add_torrent(site: &dyn SqlServer, id: u32, info_hash: &[u8; 20], free: &str) {
    site.exec(&format!(
        "INSERT INTO torrents (ID, info_hash, FreeTorrent, Seeders, Leechers, Snatched, balance) \
         VALUES ({id}, {}, '{free}', 0, 0, 0, 0)",
        site.unhex(&hex(info_hash))
    ));
}

fn start(site: &dyn SqlServer, journal: &std::path::Path, extra: &[&str]) -> Tracker {
    let url = format!("private.database_url={}", site.url());
    let password = format!("private.site_password={SITE_PASSWORD}");
    let journal = format!("private.journal_dir={}", journal.display());
    let mut args = vec![
        "private.enabled=true",
        url.as_str(),
        password.as_str(),
        journal.as_str(),
        "private.flush_interval=200ms",
        "private.reload_interval=1s",
        "private.connect_timeout=1s",
    ];
    args.extend_from_slice(extra);
    let t = Tracker::start(&args);
    await_metric(&t, "shoal_private_reloads_total", |v| v >= 1.0);
    t
}

fn await_metric(t: &Tracker, name: &str, ok: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = t.metric(name);
        if ok(v) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `sql` returns `expected` (20 s at most).
fn await_rows(site: &dyn SqlServer, sql: &str, expected: &[&[&str]]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = site.query(sql);
        let matches = rows.len() == expected.len()
            && rows
                .iter()
                .zip(expected)
                .all(|(r, e)| r.len() == e.len() && r.iter().zip(e.iter()).all(|(a, b)| a == b));
        if matches {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: {rows:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP announce with a passkey: the failure reason, if any.
#[allow(clippy::too_many_arguments)]
fn announce(
    http: &mut HttpClient,
    key: &str,
    info_hash: &[u8; 20],
    peer_id: &[u8; 20],
    uploaded: u64,
    downloaded: u64,
    left: u64,
    event: &str,
) -> Option<String> {
    let event = if event.is_empty() {
        String::new()
    } else {
        format!("&event={event}")
    };
    // One port per client: the swarm knows peers by address and port.
    let port = 6800 + u16::from(peer_id[19]);
    let r = http.get(&format!(
        "/{key}/announce?info_hash={}&peer_id={}&port={port}&uploaded={uploaded}&downloaded={downloaded}&left={left}&compact=1{event}",
        encode(info_hash),
        encode(peer_id)
    ));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.body
        .starts_with(b"d14:failure reason")
        .then(|| r.failure())
}

/// A UDP announce carrying BEP 41 URL data.
#[allow(clippy::too_many_arguments)]
fn udp_announce(
    c: &Client,
    url_data: &str,
    info_hash: &[u8; 20],
    port: u16,
    uploaded: u64,
    downloaded: u64,
    left: u64,
    event: u32,
) -> Vec<u8> {
    let mut a = Announce::new(*info_hash, port);
    a.left = left;
    a.event = event;
    let mut p = c.announce_packet(&a, 7);
    p[56..64].copy_from_slice(&downloaded.to_be_bytes());
    p[72..80].copy_from_slice(&uploaded.to_be_bytes());
    p.extend_from_slice(&[2, url_data.len() as u8]);
    p.extend_from_slice(url_data.as_bytes());
    p.push(0);
    c.send(&p);
    c.recv().expect("UDP announce answered")
}

fn journal_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("shoal-private-journal-{}", fastrand::u64(..)))
}

fn peer(n: u8) -> [u8; 20] {
    let mut id = *b"-TR2940-000000000000";
    id[19] = n;
    id
}

/// The whole contract on one database: accounting exact, refusals,
/// control endpoint.
fn accounting_and_refusals(site: &mut dyn SqlServer) {
    add_user(site, 1, true, true, true);
    add_user(site, 2, false, true, true); // may not leech
    add_user(site, 3, true, false, true); // hidden
    add_user(site, 4, true, true, false); // disabled
    let (normal, free, neutral, tokened) = ([1u8; 20], [2u8; 20], [3u8; 20], [4u8; 20]);
    add_torrent(site, 10, &normal, "0");
    add_torrent(site, 11, &free, "1");
    add_torrent(site, 12, &neutral, "2");
    add_torrent(site, 13, &tokened, "0");
    site.exec("INSERT INTO users_freeleeches (UserID, TorrentID, Time, Expired, Downloaded, Uses) VALUES (1, 13, '2026-01-01 00:00:00', 0, 0, 1)");
    let journal = journal_dir();
    let t = start(site, &journal, &["private.upload_multiplier=2.0"]);
    let mut http = HttpClient::connect(t.v4);
    let k1 = passkey(1);

    // User 1 on every torrent: a first announce (no credit), then more.
    for ih in [&normal, &free, &neutral, &tokened] {
        assert_eq!(
            announce(&mut http, &k1, ih, &peer(1), 1000, 500, 100, "started"),
            None
        );
        assert_eq!(
            announce(&mut http, &k1, ih, &peer(1), 1300, 600, 100, ""),
            None
        );
    }
    // A client restart: totals go down, no credit; then 50 more up.
    assert_eq!(
        announce(&mut http, &k1, &normal, &peer(1), 10, 0, 100, ""),
        None
    );
    assert_eq!(
        announce(&mut http, &k1, &normal, &peer(1), 60, 0, 0, "completed"),
        None
    );
    // The same user's second client, and user 3 (hidden) over UDP.
    assert_eq!(
        announce(&mut http, &k1, &normal, &peer(2), 0, 0, 5, "started"),
        None
    );
    let mut udp = Client::new(t.v4);
    udp.connect();
    let path = format!("/{}/announce", passkey(3));
    let reply = udp_announce(&udp, &path, &normal, 7000, 0, 0, 0, 2);
    assert_eq!(be32(&reply[0..4]), 1, "{reply:?}");
    let reply = udp_announce(&udp, &path, &normal, 7000, 4000, 0, 0, 0);
    assert_eq!(be32(&reply[0..4]), 1, "{reply:?}");

    // A client reporting absurd totals (past any bigint column) is credited
    // nothing and must not fail the write for everyone.
    let huge = u64::MAX;
    assert_eq!(
        announce(&mut http, &k1, &free, &peer(9), 0, 0, huge, "started"),
        None
    );
    assert_eq!(
        announce(&mut http, &k1, &free, &peer(9), huge, huge, huge, ""),
        None
    );
    assert_eq!(
        announce(&mut http, &k1, &free, &peer(9), huge, huge, huge, "stopped"),
        None
    );

    // User 1: normal +300 up x2, +100 down, then +50 up x2 after the
    // reset; free +300 x2 up only; neutral nothing; tokened +600 up, no
    // download (waived 100). User 3: +4000 x2 over UDP.
    await_rows(
        site,
        "SELECT ID, Uploaded, Downloaded FROM users_main WHERE ID IN (1, 3) ORDER BY ID",
        &[&["1", "1900", "100"], &["3", "8000", "0"]],
    );
    await_rows(
        site,
        "SELECT UserID, TorrentID, Downloaded FROM users_freeleeches",
        &[&["1", "13", "100"]],
    );
    await_rows(
        site,
        "SELECT uid, fid, IP FROM xbt_snatched ORDER BY uid",
        &[&["1", "10", "127.0.0.1"]],
    );
    // Seeders: user 1's first client (done) and user 3; leecher: the second.
    await_rows(
        site,
        "SELECT ID, Seeders, Leechers, Snatched FROM torrents ORDER BY ID",
        &[
            &["10", "2", "1", "1"],
            &["11", "0", "1", "0"],
            &["12", "0", "1", "0"],
            &["13", "0", "1", "0"],
        ],
    );
    await_rows(
        site,
        "SELECT uid, fid, active, uploaded, downloaded, remaining, announced, ip FROM xbt_files_users WHERE fid = 10 ORDER BY uid, remaining",
        &[
            &["1", "10", "1", "60", "0", "0", "4", "127.0.0.1"],
            &["1", "10", "1", "0", "0", "5", "1", "127.0.0.1"],
            &["3", "10", "1", "4000", "0", "0", "2", ""],
        ],
    );

    // Refusals, with Ocelot's messages.
    let cases = [
        (passkey(99), normal, "Passkey not found"),
        (passkey(4), normal, "Passkey not found"),
        (k1.clone(), [9; 20], "Unregistered torrent"),
        (passkey(2), normal, "Access denied, leeching forbidden"),
        ("short".into(), normal, "Passkey not found"),
    ];
    for (key, ih, expected) in cases {
        assert_eq!(
            announce(&mut http, &key, &ih, &peer(1), 0, 0, 5, "").as_deref(),
            Some(expected),
            "passkey {key}"
        );
    }
    // A user who may not leech may seed.
    assert_eq!(
        announce(&mut http, &passkey(2), &normal, &peer(3), 0, 0, 0, ""),
        None
    );
    // No passkey at all, and a scrape without one.
    let r = http.get(&announce_target(&normal, &peer(1), 1, 0, ""));
    assert_eq!(r.failure(), "Passkey not found");
    let r = http.get(&format!("/scrape?info_hash={}", encode(&normal)));
    assert_eq!(r.failure(), "Passkey not found");
    let r = http.get(&format!("/{k1}/scrape?info_hash={}", encode(&normal)));
    assert_eq!(r.bencode().dict("files").dict(normal).int("complete"), 3);
    // UDP: an unknown passkey gets an error packet with the reason.
    let reply = udp_announce(
        &udp,
        &format!("/{}/announce", passkey(98)),
        &normal,
        7001,
        0,
        0,
        0,
        0,
    );
    assert_eq!(be32(&reply[0..4]), 3);
    assert_eq!(&reply[8..], b"Passkey not found");

    // The whitelist, read at the next reload.
    site.exec("INSERT INTO xbt_client_whitelist (peer_id, vstring) VALUES ('-qB', 'qBittorrent')");
    let deadline = Instant::now() + Duration::from_secs(10);
    while announce(&mut http, &k1, &normal, &peer(1), 60, 0, 0, "").is_none() {
        assert!(Instant::now() < deadline, "the whitelist was not loaded");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        announce(&mut http, &k1, &normal, &peer(1), 60, 0, 0, "").as_deref(),
        Some("Your client is not on the whitelist")
    );
    let mut qb = peer(1);
    qb[..4].copy_from_slice(b"-qB4");
    assert_eq!(announce(&mut http, &k1, &normal, &qb, 0, 0, 0, ""), None);

    // The control endpoint: a torrent and a user added live (not in the
    // database, so only the endpoint can have told the tracker).
    let fresh = [7u8; 20];
    let control = |query: &str| {
        let r = HttpClient::connect(t.v4).get(&format!("/{SITE_PASSWORD}/update?{query}"));
        String::from_utf8(r.body).unwrap()
    };
    assert_eq!(
        control(&format!(
            "action=add_torrent&info_hash={}&id=50&freetorrent=0",
            encode(&fresh)
        )),
        "success"
    );
    assert_eq!(
        control(&format!(
            "action=add_user&passkey={}&id=60&visible=1",
            passkey(60)
        )),
        "success"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while announce(&mut http, &passkey(60), &fresh, &qb, 0, 0, 0, "").is_some() {
        assert!(
            Instant::now() < deadline,
            "the control endpoint's torrent never became announceable"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The site writes its database too (so later reloads keep them), and
    // deletes the row before telling the tracker.
    add_user(site, 60, true, true, true);
    assert_eq!(
        control(&format!(
            "action=delete_torrent&info_hash={}&reason=1",
            encode(&fresh)
        )),
        "success"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = announce(&mut http, &passkey(60), &fresh, &qb, 0, 0, 0, "");
        if got.as_deref() == Some("Unregistered torrent: Trump") {
            break;
        }
        assert!(Instant::now() < deadline, "{got:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(control("action=nonsense"), "failure");
    let r = HttpClient::connect(t.v4).get("/wrongpassword/update?action=add_user");
    assert_eq!(r.status, 404);
    assert!(t.stop().success());
    let _ = std::fs::remove_dir_all(&journal);
}

/// The database stops mid-run and comes back; then it is down at a stop:
/// accounting waits (memory, then journal), nothing is lost.
fn outages_lose_nothing(site: &mut dyn SqlServer) {
    add_user(site, 1, true, true, true);
    let ih = [5u8; 20];
    add_torrent(site, 10, &ih, "0");
    let journal = journal_dir();
    let t = start(site, &journal, &[]);
    let mut http = HttpClient::connect(t.v4);
    let k = passkey(1);
    let mut up = 0;
    assert_eq!(
        announce(&mut http, &k, &ih, &peer(1), up, 0, 0, "started"),
        None
    );
    for _ in 0..5 {
        up += 100;
        assert_eq!(announce(&mut http, &k, &ih, &peer(1), up, 0, 0, ""), None);
    }
    await_rows(
        site,
        "SELECT Uploaded FROM users_main WHERE ID = 1",
        &[&["500"]],
    );

    site.stop();
    for _ in 0..5 {
        up += 100;
        assert_eq!(
            announce(&mut http, &k, &ih, &peer(1), up, 0, 0, ""),
            None,
            "answered while the database is down"
        );
    }
    await_metric(&t, "shoal_private_flush_failures_total", |v| v >= 1.0);
    await_metric(&t, "shoal_private_pending_rows", |v| v >= 1.0);
    assert_eq!(t.metric("shoal_private_database_up"), 0.0);
    site.restart();
    await_rows(
        site,
        "SELECT Uploaded FROM users_main WHERE ID = 1",
        &[&["1000"]],
    );
    await_metric(&t, "shoal_private_database_up", |v| v == 1.0);

    // Down again, then SIGTERM with accounting pending: journaled.
    site.stop();
    for _ in 0..3 {
        up += 100;
        assert_eq!(announce(&mut http, &k, &ih, &peer(1), up, 0, 0, ""), None);
    }
    assert!(t.stop().success());
    let files = std::fs::read_dir(&journal).unwrap().count();
    assert!(files >= 1, "nothing journaled at the stop");

    // A start while the database is still down answers from the catalog
    // the last run read (kept in the journal directory).
    let url = format!("private.database_url={}", site.url());
    let password = format!("private.site_password={SITE_PASSWORD}");
    let dir = format!("private.journal_dir={}", journal.display());
    let t = Tracker::start(&[
        "private.enabled=true",
        url.as_str(),
        password.as_str(),
        dir.as_str(),
        "private.flush_interval=200ms",
        "private.connect_timeout=1s",
    ]);
    await_metric(&t, "shoal_private_users", |v| v >= 1.0);
    let mut http = HttpClient::connect(t.v4);
    assert_eq!(announce(&mut http, &k, &ih, &peer(1), up, 0, 0, ""), None);
    assert!(t.stop().success());
    site.restart();
    let t = start(site, &journal, &[]);
    await_rows(
        site,
        "SELECT Uploaded FROM users_main WHERE ID = 1",
        &[&["1300"]],
    );
    let batches = || {
        std::fs::read_dir(&journal)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "batch")
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while batches() > 0 {
        assert!(
            Instant::now() < deadline,
            "the journal was not emptied after its rows were written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The client's last report was kept over the restart: its next
    // announce is credited from there, not taken as a new count.
    let mut http = HttpClient::connect(t.v4);
    up += 100;
    assert_eq!(announce(&mut http, &k, &ih, &peer(1), up, 0, 0, ""), None);
    await_rows(
        site,
        "SELECT Uploaded FROM users_main WHERE ID = 1",
        &[&["1400"]],
    );

    // A crash: the database is down, the rows were journaled at a flush,
    // and the tracker is killed (SIGKILL, no stop): they are written
    // after the next start.
    site.stop();
    for _ in 0..2 {
        up += 100;
        assert_eq!(announce(&mut http, &k, &ih, &peer(1), up, 0, 0, ""), None);
    }
    await_metric(&t, "shoal_private_journal_rows", |v| v >= 1.0);
    drop(t);
    site.restart();
    let t = start(site, &journal, &[]);
    await_rows(
        site,
        "SELECT Uploaded FROM users_main WHERE ID = 1",
        &[&["1600"]],
    );
    assert!(t.stop().success());
    let _ = std::fs::remove_dir_all(&journal);
}

fn mariadb() -> MariaDb {
    let db = MariaDb::start();
    db.load_gazelle_schema();
    db
}

fn postgres() -> Postgres {
    let db = Postgres::start();
    db.load_gazelle_schema();
    db
}

#[test]
fn mariadb_accounting_refusals_and_control() {
    accounting_and_refusals(&mut mariadb());
}

#[test]
fn postgres_accounting_refusals_and_control() {
    accounting_and_refusals(&mut postgres());
}

#[test]
fn mariadb_outages_lose_nothing() {
    outages_lose_nothing(&mut mariadb());
}

#[test]
fn postgres_outages_lose_nothing() {
    outages_lose_nothing(&mut postgres());
}

/// SIGKILL at random points of the flush cycle, the database up: every
/// start works, nothing is counted twice, and rows journaled before a
/// kill (the rounds that waited two flush intervals) are all written.
#[test]
fn sigkill_during_flushes_loses_nothing_journaled() {
    let site = mariadb();
    add_user(&site, 1, true, true, true);
    let ih = [6u8; 20];
    add_torrent(&site, 10, &ih, "0");
    let journal = journal_dir();
    let (mut credited, mut journaled) = (0u64, 0u64);
    for round in 0..8u8 {
        let t = start(&site, &journal, &[]);
        let mut http = HttpClient::connect(t.v4);
        let k = passkey(1);
        // A new client each round: its first announce is its base.
        let id = peer(round);
        assert_eq!(announce(&mut http, &k, &ih, &id, 0, 0, 0, "started"), None);
        for n in 1..=20u64 {
            assert_eq!(announce(&mut http, &k, &ih, &id, n * 100, 0, 0, ""), None);
        }
        credited += 2000;
        if round % 2 == 0 {
            // Past two flushes (200 ms) and a tick: journaled, likely
            // written; the kill lands anywhere in the cycle.
            std::thread::sleep(Duration::from_millis(450 + fastrand::u64(..300)));
            journaled += 2000;
        } else {
            std::thread::sleep(Duration::from_millis(fastrand::u64(..250)));
        }
        drop(t); // SIGKILL
    }
    let t = start(&site, &journal, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = loop {
        let v: u64 = site.query("SELECT Uploaded FROM users_main WHERE ID = 1")[0][0]
            .parse()
            .unwrap();
        if v >= journaled || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        written >= journaled,
        "{written} written, {journaled} journaled"
    );
    assert!(
        written <= credited,
        "{written} written, only {credited} credited"
    );
    assert!(t.stop().success());
    let _ = std::fs::remove_dir_all(&journal);
}

#[test]
fn a_bad_private_config_names_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"),
        ])
        .args([
            "--set",
            "private.enabled=true",
            "--set",
            "private.database_url=sqlite://x",
        ])
        .arg("--check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("private.database_url"), "{err}");
}
