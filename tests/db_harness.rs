//! The database harness itself: a real MariaDB and a real PostgreSQL,
//! each started by the test on a private port, take the Gazelle schema,
//! answer Ocelot's load queries as written, and keep their rows across a
//! kill and a restart.

mod common;

use common::mariadb::MariaDb;
use common::postgres::Postgres;
use common::sqlserver::SqlServer;
use std::time::Instant;

const PASSKEY: &str = "0123456789abcdef0123456789abcdef";

fn rows(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

/// A hash with the bytes text handling gets wrong: NUL, 0xff, a quote and
/// a backslash.
fn awkward_hash() -> String {
    let mut hash = vec![0x00, 0xff, b'\'', b'\\'];
    hash.extend((0..16).map(|_| fastrand::u8(..)));
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Schema, rows, Ocelot's reads, then a kill and a restart.
fn exercise(db: &mut impl SqlServer) {
    // How this server prints a true boolean (1 or t).
    let yes = db.query("SELECT 1 = 1")[0][0].clone();
    let hash = awkward_hash();
    db.exec(&format!(
        "INSERT INTO users_main (ID, IP, Enabled, Visible, can_leech, torrent_pass)
           VALUES (7, '127.0.0.1', '1', '1', 1, '{PASSKEY}');
         INSERT INTO users_main (ID, Enabled, torrent_pass)
           VALUES (8, '0', 'ffffffffffffffffffffffffffffffff');
         INSERT INTO torrents (ID, info_hash, FreeTorrent, Snatched)
           VALUES (3, {}, '1', 5);
         INSERT INTO users_freeleeches (UserID, TorrentID, Time) VALUES (7, 3, NOW());
         INSERT INTO xbt_client_whitelist (peer_id, vstring) VALUES ('-TR2', 'Transmission 2');",
        db.unhex(&hash)
    ));
    // The unique key on info_hash is real.
    assert!(db
        .try_exec(&format!(
            "INSERT INTO torrents (ID, info_hash) VALUES (4, {})",
            db.unhex(&hash)
        ))
        .is_err());
    // A value outside the enum is refused (MariaDB in strict mode,
    // PostgreSQL by the CHECK). Not '3': MySQL takes a numeric string that
    // is no member as the member's index.
    assert!(db
        .try_exec("INSERT INTO torrents (ID, info_hash, FreeTorrent) VALUES (5, 'x', 'x')")
        .is_err());

    let check = |db: &dyn SqlServer| {
        // Ocelot's load queries (WhatCD/Ocelot db.cpp), as written; only
        // the binary column is selected as hex to compare it.
        assert_eq!(
            db.query(&format!(
                "SELECT ID, {}, freetorrent, Snatched FROM torrents ORDER BY ID",
                db.hex("info_hash")
            )),
            rows(&[&["3", &hash, "1", "5"]])
        );
        assert_eq!(
            db.query("SELECT ID, info_hash, freetorrent, Snatched FROM torrents ORDER BY ID")
                .len(),
            1
        );
        assert_eq!(
            db.query(
                "SELECT ID, can_leech, torrent_pass, (Visible='0' OR IP='127.0.0.1') AS Protected \
                 FROM users_main WHERE Enabled='1'"
            ),
            rows(&[&["7", "1", PASSKEY, &yes]])
        );
        assert_eq!(
            db.query(&format!(
                "SELECT uf.UserID, {} FROM users_freeleeches AS uf \
                 JOIN torrents AS t ON t.ID = uf.TorrentID WHERE uf.Expired = '0'",
                db.hex("t.info_hash")
            )),
            rows(&[&["7", &hash]])
        );
        assert_eq!(
            db.query("SELECT peer_id FROM xbt_client_whitelist"),
            rows(&[&["-TR2"]])
        );
        assert_eq!(
            db.query(
                "SELECT last_action, Uploaded FROM torrents, users_main WHERE users_main.ID = 8"
            ),
            rows(&[&["NULL", "0"]])
        );
    };
    check(db);

    db.stop();
    assert!(
        db.try_query("SELECT 1").is_err(),
        "a stopped server still answers"
    );
    let restarted = Instant::now();
    db.restart();
    eprintln!("restart took {:?}", restarted.elapsed());
    check(db);
    db.exec("UPDATE torrents SET Seeders = 2, last_action = NOW() WHERE ID = 3");
    assert_eq!(
        db.query("SELECT Seeders, last_action IS NOT NULL FROM torrents")[0][0],
        "2"
    );
}

#[test]
fn mariadb_takes_the_gazelle_schema_and_keeps_rows_across_a_restart() {
    let started = Instant::now();
    let mut db = MariaDb::start();
    eprintln!("mariadb start took {:?}", started.elapsed());
    assert_eq!(
        db.url(),
        format!("mysql://shoal:shoal@127.0.0.1:{}/gazelle", db.port)
    );
    db.load_gazelle_schema();
    assert_eq!(db.query("SHOW TABLES").len(), 6, "Ocelot's six tables");
    exercise(&mut db);
}

#[test]
fn postgres_takes_the_gazelle_schema_and_keeps_rows_across_a_restart() {
    let started = Instant::now();
    let mut db = Postgres::start_with(&["work_mem=8MB"]);
    eprintln!("postgres start took {:?}", started.elapsed());
    assert_eq!(
        db.url(),
        format!("postgres://shoal:shoal@127.0.0.1:{}/gazelle", db.port)
    );
    db.load_gazelle_schema();
    assert_eq!(
        db.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tableowner = 'shoal'"
        )
        .len(),
        6,
        "Ocelot's six tables, owned by shoal"
    );
    exercise(&mut db);
    // The test's setting outlives the restart.
    assert_eq!(db.query("SHOW work_mem"), rows(&[&["8MB"]]));
}

/// Ocelot's user flush (WhatCD/Ocelot db.cpp), as written, names only ID,
/// Uploaded and Downloaded. Gazelle's torrent_pass is NOT NULL without a
/// default, so a strict server (MariaDB's default) refuses the statement
/// even though every row exists; a lenient one sums the deltas.
#[test]
fn ocelots_user_flush_runs_on_a_lenient_mariadb_only() {
    const FLUSH: &str = "INSERT INTO users_main (ID, Uploaded, Downloaded) \
        VALUES (7, 100, 50), (7, 1, 2) ON DUPLICATE KEY UPDATE \
        Uploaded = Uploaded + VALUES(Uploaded), Downloaded = Downloaded + VALUES(Downloaded)";
    let mut db = MariaDb::start_with(&["--sql-mode="]);
    db.load_gazelle_schema();
    db.exec(&format!(
        "INSERT INTO users_main (ID, torrent_pass) VALUES (7, '{PASSKEY}')"
    ));
    let refused = db
        .try_exec(&format!(
            "SET SESSION sql_mode = 'STRICT_TRANS_TABLES'; {FLUSH}"
        ))
        .unwrap_err();
    assert!(refused.contains("torrent_pass"), "{refused}");
    db.exec(FLUSH);
    db.stop();
    db.restart();
    // The option outlives the restart.
    assert_eq!(db.query("SELECT @@GLOBAL.sql_mode"), rows(&[&[""]]));
    db.exec(FLUSH);
    assert_eq!(
        db.query("SELECT Uploaded, Downloaded, torrent_pass FROM users_main"),
        rows(&[&["202", "104", PASSKEY]])
    );
}
