//! Swarms that survive a restart: the real binary writes its snapshot on
//! SIGTERM and reads it back on the next start, whatever the core count;
//! torn and foreign files never stop a start (unless told to) nor panic.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

/// A fresh directory for one test's snapshot.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path_setting(path: &std::path::Path) -> String {
    format!("storage.snapshot.path=\"{}\"", path.display())
}

const COMPLETED: u32 = 1;
const STOPPED: u32 = 3;

#[test]
fn swarms_survive_restarts_on_other_core_counts() {
    let dir = scratch("restart");
    let path = dir.join("swarms.snapshot");
    let set = path_setting(&path);
    let hashes: Vec<[u8; 20]> = (0..40).map(|_| random_hash()).collect();

    let t = Tracker::start(&[&set]);
    let c = Client::connected(t.v4);
    for (i, ih) in hashes.iter().enumerate() {
        let i = i as u16;
        c.announce(&Announce::new(*ih, 1000 + i));
        c.announce(&Announce::new(*ih, 2000 + i));
        // A leecher that completes: a seeder and one download.
        c.announce(&Announce::new(*ih, 3000 + i));
        c.announce(&Announce::new(*ih, 3000 + i).seeder().event(COMPLETED));
    }
    Client::connected(t.v6).announce(&Announce::new(hashes[0], 4000));
    let before = c.scrape(&hashes);
    assert_eq!(before[0], (1, 1, 3), "seeders, downloaded, leechers");
    assert!(before[1..].iter().all(|&s| s == (1, 1, 2)), "{before:?}");
    let old_id = c.connection_id;
    assert!(t.stop().success());
    assert!(path.exists(), "SIGTERM wrote the snapshot");

    for cores in ["[0]", "[0, 1, 0]"] {
        let t = Tracker::start(&[&set, &format!("runtime.cores={cores}")]);
        let c = Client::connected(t.v4);
        assert_eq!(
            c.scrape(&hashes),
            before,
            "{cores} shards: every swarm is back"
        );
        // A new announcer gets the old peers (the IPv4 ones, over IPv4).
        let got = c.announce(&Announce::new(hashes[1], 9999));
        assert_eq!(got.peers.len(), 3, "{cores}");
        assert_eq!((got.seeders, got.leechers), (1, 3));
        c.announce(&Announce::new(hashes[1], 9999).event(STOPPED));
        // The connection id handed out before the restart still works (the
        // random key was kept in the snapshot).
        let mut old = Client::new(t.v4);
        old.connection_id = old_id;
        assert_eq!(old.scrape(&hashes[..1]), before[..1]);
        assert!(t.stop().success());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The binary started directly: exit code and stderr.
fn run_once(extra: &[&str]) -> (Option<i32>, String) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
    cmd.arg("--config")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"))
        .args(["--set", "runtime.cores=[0]"])
        .args(["--set", &format!("udp.listen=[\"127.0.0.1:{port}\"]")])
        .args(["--set", "http.listen=[]", "--set", "metrics.listen=[]"]);
    for e in extra {
        cmd.args(["--set", e]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn torn_and_foreign_snapshots_are_set_aside_or_refused() {
    let dir = scratch("bad");
    let path = dir.join("swarms.snapshot");
    let set = path_setting(&path);

    // A real snapshot to tear.
    let t = Tracker::start(&[&set]);
    let ih = random_hash();
    let c = Client::connected(t.v4);
    c.announce(&Announce::new(ih, 1));
    assert!(t.stop().success());
    let good = std::fs::read(&path).unwrap();

    // Torn (cut short) with on_bad_file: fail: the start is refused, named.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let (code, err) = run_once(&[&set, "storage.snapshot.on_bad_file=fail"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("storage.snapshot") && err.contains("truncated"),
        "{err}"
    );
    assert!(path.exists(), "a refused start leaves the file alone");

    // One flipped byte: refused by the checksum.
    let mut corrupt = good.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x10;
    std::fs::write(&path, &corrupt).unwrap();
    let (code, err) = run_once(&[&set, "storage.snapshot.on_bad_file=fail"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("checksum") || err.contains("corrupt") || err.contains("truncated"),
        "{err}"
    );

    // Foreign, with the default (start_empty): moved aside, start empty.
    std::fs::write(&path, b"<html>not a snapshot</html>").unwrap();
    let t = Tracker::start(&[&set]);
    let c = Client::connected(t.v4);
    assert_eq!(c.scrape(&[ih]), vec![(0, 0, 0)]);
    let mut aside = path.clone().into_os_string();
    aside.push(".bad");
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        b"<html>not a snapshot</html>"
    );
    assert!(t.stop().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
