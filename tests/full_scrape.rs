//! Full scrape (`/scrape` without `info_hash`, `http.full_scrape`): every
//! torrent of both shards, streamed in chunks, to a client with the token
//! or from a trusted address; refused otherwise; JSON on request; the
//! connection kept alive after it; refused as a plain bad scrape when off.

mod common;

use common::bencode::{Dict, Fields as _};
use common::http::HttpClient;
use common::*;
use std::collections::HashMap;
use std::net::IpAddr;

const TOKEN: &str = "indexer-token-0123456789";

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The files of a bencoded full scrape, by infohash: (complete, incomplete).
fn files(body: &[u8]) -> HashMap<Vec<u8>, (i64, i64)> {
    let answer = Dict::parse(body).expect("one bencoded dictionary");
    let files = answer.dict("files");
    let mut out = HashMap::new();
    for (key, value) in files.entries() {
        let f = value.as_dict().expect("a dictionary per file");
        let previous = out.insert(key.to_vec(), (f.int("complete"), f.int("incomplete")));
        assert!(previous.is_none(), "{} twice", hex(key));
    }
    out
}

#[test]
fn full_scrape_streams_every_torrent_to_the_token_or_a_trusted_address_only() {
    let t = Tracker::start(&[
        "http.full_scrape.enabled=true",
        &format!("http.full_scrape.token={TOKEN}"),
        "http.full_scrape.trusted=[\"127.0.0.2/32\"]",
    ]);
    // 5,000 torrents spread over both shards: one leecher each, and a
    // seeder too on every tenth.
    let c = Client::connected(t.v4);
    let hashes: Vec<[u8; 20]> = (0..5000).map(|_| random_hash()).collect();
    for (i, ih) in hashes.iter().enumerate() {
        c.announce(&Announce::new(*ih, 10_000));
        if i % 10 == 0 {
            c.announce(&Announce::new(*ih, 10_001).seeder());
        }
    }

    // With the token, on a keep-alive connection.
    let mut http = HttpClient::connect(t.v4);
    let r = http.get(&format!("/scrape?token={TOKEN}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let got = files(&r.body);
    assert_eq!(got.len(), hashes.len());
    for (i, ih) in hashes.iter().enumerate() {
        let want = if i % 10 == 0 { (1, 1) } else { (0, 1) };
        assert_eq!(got.get(ih.as_slice()), Some(&want), "torrent {i}");
    }
    // The same connection serves on.
    let r = http.get(&format!(
        "/scrape?info_hash={}",
        common::http::encode(&hashes[0])
    ));
    assert_eq!(r.bencode().dict("files").dict(hashes[0]).int("complete"), 1);

    // JSON, for scripts.
    let r = http.get(&format!("/scrape?format=json&token={TOKEN}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&r.body).expect("valid JSON");
    let json = json["files"].as_object().unwrap();
    assert_eq!(json.len(), hashes.len());
    assert_eq!(json[&hex(&hashes[10])]["complete"], 1);
    assert_eq!(json[&hex(&hashes[11])]["incomplete"], 1);

    // From the trusted address, no token needed.
    let trusted: IpAddr = "127.0.0.2".parse().unwrap();
    let mut from_trusted = HttpClient::connect_from(trusted, t.v4);
    let r = from_trusted.get("/scrape");
    assert_eq!(r.status, 200);
    assert_eq!(files(&r.body).len(), hashes.len());

    // Anyone else: refused with a reason, whatever the token's guess.
    for target in [
        "/scrape".to_string(),
        "/scrape?token=".to_string(),
        format!("/scrape?token={}", &TOKEN[..TOKEN.len() - 1]),
        format!("/scrape?token={TOKEN}x&format=json"),
    ] {
        let mut other = HttpClient::connect_from("127.0.0.3".parse().unwrap(), t.v4);
        let r = other.get(&target);
        assert_eq!(r.status, 403, "{target}");
        assert_eq!(r.failure(), "full scrape not allowed", "{target}");
    }
    t.stop();
}

#[test]
fn without_full_scrape_a_scrape_without_info_hash_is_refused() {
    let t = Tracker::start(&[]);
    let mut http = HttpClient::connect(t.v4);
    let r = http.get(&format!("/scrape?token={TOKEN}"));
    assert_eq!(r.status, 400);
    assert!(r.failure().contains("info_hash"), "{}", r.failure());
    t.stop();
}

#[test]
fn full_scrape_settings_are_checked_at_start() {
    for (sets, names) in [
        (vec!["http.full_scrape.enabled=true"], "http.full_scrape"),
        (
            vec![
                "http.full_scrape.enabled=true",
                "http.full_scrape.token=short",
            ],
            "http.full_scrape.token",
        ),
        (
            vec!["http.full_scrape.trusted=[\"10.0.0.0/33\"]"],
            "http.full_scrape.trusted",
        ),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        cmd.args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"),
            "--check-config",
        ]);
        for s in &sets {
            cmd.args(["--set", s]);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sets:?}: {err}");
        assert!(err.contains(names), "{sets:?}: {err}");
    }
}
