//! Private mode's flush of a large batch (issue 11): how long the database
//! thread takes to write ROWS pending `xbt_files_users` rows, with ROWS/10
//! users' and ROWS torrents' deltas, through the code the service uses
//! (`sql::writes`, then `Db::write`: one transaction, one statement per
//! table, cut only when a statement would pass the server's packet size).
//! Real MariaDB and PostgreSQL, started here as the tests start them
//! (tests/common/), with a buffer pool that holds the rows.
//!
//!   cargo bench --bench private_flush [-- --rows 100000 --runs 5 --servers mariadb,postgres]
//!
//! Two cases per server, each timed RUNS times (median, min, max):
//! `new` (no peer row exists: inserts; `xbt_files_users` emptied before
//! each run, untimed) and `existing` (every peer row exists: the
//! upsert's update path; what a steady flush mostly is). Each run checks
//! that every peer row is in the table afterwards.

// The tests' servers (tests/common/), started the same way.
#[path = "../tests/common/mod.rs"]
mod common;

use common::mariadb::MariaDb;
use common::postgres::Postgres;
use common::sqlserver::SqlServer;
use shoal::config::Dialect;
use shoal::private::batch::{Batch, PeerRow, TorrentRow, Transfer};
use shoal::private::service::db::Db;
use shoal::private::service::sql;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(600);

struct Args {
    rows: u32,
    runs: usize,
    servers: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        rows: 100_000,
        runs: 5,
        servers: vec!["mariadb".into(), "postgres".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--rows" => a.rows = value("--rows").parse().expect("--rows: a number"),
            "--runs" => a.runs = value("--runs").parse().expect("--runs: a number"),
            "--servers" => a.servers = value("--servers").split(',').map(String::from).collect(),
            // cargo bench passes --bench; libtest's other flags mean nothing here.
            _ => {}
        }
    }
    assert!(
        a.rows >= 10 && a.runs >= 1,
        "--rows at least 10, --runs at least 1"
    );
    a
}

fn info_hash(i: u32) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[..4].copy_from_slice(&i.to_be_bytes());
    h[4..8].copy_from_slice(&(i ^ 0x5a5a_5a5a).to_le_bytes());
    h
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Users 1..=rows/10 and torrents 1..=rows, in multi-row inserts.
fn load_site(site: &dyn SqlServer, rows: u32) {
    site.load_gazelle_schema();
    let users = rows / 10;
    let chunk = 5_000;
    for start in (1..=users).step_by(chunk) {
        let values: Vec<String> = (start..=users.min(start + chunk as u32 - 1))
            .map(|id| format!("({id},'{id:0>32}','1')"))
            .collect();
        site.exec(&format!(
            "INSERT INTO users_main (ID, torrent_pass, Enabled) VALUES {}",
            values.join(",")
        ));
    }
    for start in (1..=rows).step_by(chunk) {
        let values: Vec<String> = (start..=rows.min(start + chunk as u32 - 1))
            .map(|id| format!("({id},{})", site.unhex(&hex(&info_hash(id)))))
            .collect();
        site.exec(&format!(
            "INSERT INTO torrents (ID, info_hash) VALUES {}",
            values.join(",")
        ));
    }
}

/// ROWS peer rows (one per torrent, users in turn), ROWS/10 users, ROWS
/// torrents; `round` changes the figures so every run writes new values.
fn batch(rows: u32, round: u64) -> Batch {
    let users = rows / 10;
    let mut b = Batch::default();
    for uid in 1..=users {
        b.users.insert(
            uid,
            Transfer {
                uploaded: 1_000 + round,
                downloaded: 500 + round,
            },
        );
    }
    for tid in 1..=rows {
        let uid = tid % users + 1;
        let mut peer_id = *b"-SL0100-000000000000";
        peer_id[8..12].copy_from_slice(&tid.to_be_bytes());
        b.peers.insert(
            (uid, tid, peer_id),
            PeerRow {
                active: true,
                uploaded: u64::from(tid) * 1_000 + round,
                downloaded: u64::from(tid) * 10,
                remaining: u64::from(tid % 3) * 1_000_000,
                upspeed: 1_000,
                downspeed: 100,
                timespent: 60 + round,
                announced: 2 + round as u32,
                ip: Some(std::net::IpAddr::from([
                    10,
                    (tid >> 16 & 255) as u8,
                    (tid >> 8 & 255) as u8,
                    (tid & 255) as u8,
                ])),
                mtime: 1_780_000_000 + round,
            },
        );
        b.torrents.insert(
            tid,
            TorrentRow {
                seeders: tid % 7,
                leechers: tid % 5,
                snatched: u32::from(tid % 11 == 0),
            },
        );
    }
    b
}

fn median(xs: &mut [Duration]) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn measure(name: &str, site: &dyn SqlServer, dialect: Dialect, a: &Args) {
    let started = Instant::now();
    load_site(site, a.rows);
    eprintln!(
        "{name}: {} users, {} torrents loaded in {:.1}s",
        a.rows / 10,
        a.rows,
        started.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let mut db = Db::connect(&site.url(), dialect, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        // What the service does on connecting.
        let max_bytes = db.max_statement_bytes(LIMIT).await;
        let mut round = 0u64;
        for case in ["new", "existing"] {
            let (mut format_t, mut write_t) = (Vec::new(), Vec::new());
            let mut statements_n = 0;
            let mut rows_n = 0;
            if case == "existing" {
                // Every peer row in place before the timed runs.
                round += 1;
                let s = sql::writes(dialect, &batch(a.rows, round), max_bytes);
                db.write(&s, LIMIT).await.expect("prefill");
            }
            for _ in 0..a.runs {
                round += 1;
                if case == "new" {
                    db.write(&["DELETE FROM xbt_files_users".to_string()], LIMIT)
                        .await
                        .expect("empty xbt_files_users");
                }
                let b = batch(a.rows, round);
                rows_n = b.rows();
                let t = Instant::now();
                let statements = sql::writes(dialect, &b, max_bytes);
                let formatted = t.elapsed();
                db.write(&statements, LIMIT)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: write: {e}"));
                write_t.push(t.elapsed() - formatted);
                format_t.push(formatted);
                statements_n = statements.len();
            }
            let count = site.query("SELECT COUNT(*) FROM xbt_files_users");
            assert_eq!(count[0][0], a.rows.to_string(), "{name}: peer rows written");
            let (min, max) = (
                *write_t.iter().min().unwrap(),
                *write_t.iter().max().unwrap(),
            );
            println!(
                "| {name} | {case} | {rows_n} | {statements_n} | {} | **{}** (min {}, max {}) |",
                ms(median(&mut format_t)),
                ms(median(&mut write_t)),
                ms(min),
                ms(max)
            );
        }
    });
}

fn main() {
    let a = args();
    println!(
        "private mode flush: {} peer rows, {} users, {} torrents per batch; median of {} runs",
        a.rows,
        a.rows / 10,
        a.rows,
        a.runs
    );
    println!("| server | peer rows | rows in the batch | statements | sql::writes | Db::write (one transaction) |");
    println!("|---|---|---:|---:|---:|---:|");
    for server in &a.servers {
        match server.as_str() {
            "mariadb" => {
                let site = MariaDb::start_with(&[
                    "--innodb-buffer-pool-size=512M",
                    "--innodb-log-file-size=256M",
                ]);
                measure("MariaDB", &site, Dialect::MySql, &a);
            }
            "postgres" => {
                let site = Postgres::start_with(&["shared_buffers=512MB", "max_wal_size=2GB"]);
                measure("PostgreSQL", &site, Dialect::Postgres, &a);
            }
            other => eprintln!("unknown server {other} (mariadb, postgres)"),
        }
    }
}
