//! The SQL text of Ocelot's contract, per dialect: the loads and the
//! batched writes. Writes carry their values inline (numbers, hex
//! literals and addresses Shoal formatted itself, nothing a client sent
//! as text), so a whole table's rows go in one statement with no limit on
//! bound parameters; a statement longer than `max_bytes` is cut into
//! several, so a very large batch still fits the server's packet size.

use crate::config::Dialect;
use crate::private::batch::Batch;
use std::fmt::Write;

/// Ocelot's start: peer rows are rebuilt from announces, swarm counts from
/// zero.
pub fn reset(_: Dialect) -> [&'static str; 2] {
    [
        "DELETE FROM xbt_files_users",
        "UPDATE torrents SET Seeders = 0, Leechers = 0",
    ]
}

/// id, info_hash, freetorrent flag.
pub fn load_torrents(d: Dialect) -> &'static str {
    match d {
        Dialect::MySql => {
            "SELECT CAST(ID AS SIGNED), info_hash, CAST(FreeTorrent AS CHAR) FROM torrents ORDER BY ID"
        }
        Dialect::Postgres => {
            "SELECT id::bigint, info_hash, freetorrent::text FROM torrents ORDER BY id"
        }
    }
}

/// id, can_leech, passkey, protected (hidden).
pub fn load_users(d: Dialect) -> &'static str {
    match d {
        Dialect::MySql => {
            "SELECT CAST(ID AS SIGNED), CAST(can_leech AS SIGNED), CAST(torrent_pass AS CHAR), \
             CAST(CASE WHEN Visible = '0' OR IP = '127.0.0.1' THEN 1 ELSE 0 END AS SIGNED) \
             FROM users_main WHERE Enabled = '1'"
        }
        Dialect::Postgres => {
            "SELECT id::bigint, can_leech::bigint, torrent_pass::text, \
             (CASE WHEN visible::text = '0' OR ip::text = '127.0.0.1' THEN 1 ELSE 0 END)::bigint \
             FROM users_main WHERE enabled::text = '1'"
        }
    }
}

/// user id, torrent id of unexpired freeleech tokens.
pub fn load_tokens(d: Dialect) -> &'static str {
    match d {
        Dialect::MySql => {
            "SELECT CAST(UserID AS SIGNED), CAST(TorrentID AS SIGNED) FROM users_freeleeches WHERE Expired = 0"
        }
        Dialect::Postgres => {
            "SELECT userid::bigint, torrentid::bigint FROM users_freeleeches WHERE expired::int = 0"
        }
    }
}

/// peer id prefixes.
pub fn load_whitelist(d: Dialect) -> &'static str {
    match d {
        Dialect::MySql => "SELECT CAST(peer_id AS CHAR) FROM xbt_client_whitelist",
        Dialect::Postgres => "SELECT peer_id::text FROM xbt_client_whitelist",
    }
}

/// The statements that write `batch` (in this order: users, tokens,
/// peers, snatches, torrents), none longer than about `max_bytes`.
pub fn writes(d: Dialect, batch: &Batch, max_bytes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut users: Vec<_> = batch.users.iter().collect();
    users.sort_by_key(|(id, _)| **id);
    let rows = users
        .iter()
        .map(|(id, t)| format!("({id},{},{})", big(t.uploaded), big(t.downloaded)));
    match d {
        Dialect::MySql => statements(
            &mut out,
            max_bytes,
            "INSERT IGNORE INTO users_main (ID, Uploaded, Downloaded) VALUES ",
            rows,
            &format!(
                " ON DUPLICATE KEY UPDATE Uploaded = {}, Downloaded = {}",
                mysql_sum("Uploaded"),
                mysql_sum("Downloaded")
            ),
        ),
        Dialect::Postgres => statements(
            &mut out,
            max_bytes,
            &format!(
                "UPDATE users_main AS u SET uploaded = {}, downloaded = {} FROM (VALUES ",
                postgres_sum("u.uploaded", "v.up"),
                postgres_sum("u.downloaded", "v.down")
            ),
            rows.map(|r| typed(r, 3)),
            ") AS v(id, up, down) WHERE u.id = v.id",
        ),
    }

    let mut tokens: Vec<_> = batch.tokens.iter().collect();
    tokens.sort_by_key(|(k, _)| **k);
    let rows = tokens
        .iter()
        .map(|((uid, tid), down)| format!("({uid},{tid},{})", big(**down)));
    match d {
        Dialect::MySql => statements(
            &mut out,
            max_bytes,
            "INSERT IGNORE INTO users_freeleeches (UserID, TorrentID, Downloaded) VALUES ",
            rows,
            &format!(
                " ON DUPLICATE KEY UPDATE Downloaded = {}",
                mysql_sum("Downloaded")
            ),
        ),
        Dialect::Postgres => statements(
            &mut out,
            max_bytes,
            &format!(
                "UPDATE users_freeleeches AS f SET downloaded = {} FROM (VALUES ",
                postgres_sum("f.downloaded", "v.down")
            ),
            rows.map(|r| typed(r, 3)),
            ") AS v(uid, tid, down) WHERE f.userid = v.uid AND f.torrentid = v.tid",
        ),
    }

    let mut peers: Vec<_> = batch.peers.iter().collect();
    peers.sort_by_key(|(k, _)| **k);
    let rows = peers.iter().map(|((uid, tid, peer_id), p)| {
        format!(
            "({uid},{tid},{},{},{},{},{},{},{},0,{},{},{},'',{})",
            binary(d, peer_id),
            u8::from(p.active),
            big(p.uploaded),
            big(p.downloaded),
            big(p.remaining),
            int(p.upspeed),
            int(p.downspeed),
            int(p.timespent),
            int(u64::from(p.announced)),
            address(p.ip),
            int(p.mtime)
        )
    });
    let columns = "INSERT INTO xbt_files_users (uid, fid, peer_id, active, uploaded, downloaded, \
                   remaining, upspeed, downspeed, corrupt, timespent, announced, ip, useragent, mtime) VALUES ";
    let updated = [
        "active",
        "uploaded",
        "downloaded",
        "remaining",
        "upspeed",
        "downspeed",
        "timespent",
        "announced",
        "mtime",
    ];
    let tail = match d {
        Dialect::MySql => format!(
            " ON DUPLICATE KEY UPDATE {}",
            updated
                .iter()
                .map(|c| format!("{c} = VALUES({c})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Dialect::Postgres => format!(
            " ON CONFLICT (peer_id, fid, uid) DO UPDATE SET {}",
            updated
                .iter()
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    statements(&mut out, max_bytes, columns, rows, &tail);

    let rows = batch.snatches.iter().map(|s| {
        format!(
            "({},{},{},{})",
            s.user_id,
            s.torrent_id,
            int(s.tstamp),
            address(s.ip)
        )
    });
    statements(
        &mut out,
        max_bytes,
        "INSERT INTO xbt_snatched (uid, fid, tstamp, IP) VALUES ",
        rows,
        "",
    );

    let mut torrents: Vec<_> = batch.torrents.iter().collect();
    torrents.sort_by_key(|(id, _)| **id);
    let rows = torrents
        .iter()
        .map(|(id, t)| format!("({id},{},{},{})", t.seeders, t.leechers, t.snatched));
    match d {
        Dialect::MySql => {
            let before = out.len();
            statements(
                &mut out,
                max_bytes,
                "INSERT IGNORE INTO torrents (ID, Seeders, Leechers, Snatched) VALUES ",
                rows,
                " ON DUPLICATE KEY UPDATE Seeders = VALUES(Seeders), Leechers = VALUES(Leechers), \
                 Snatched = Snatched + VALUES(Snatched), \
                 last_action = IF(VALUES(Seeders) > 0, NOW(), last_action)",
            );
            // As Ocelot: a torrent deleted meanwhile came back as an empty
            // row; it goes again.
            if out.len() > before {
                out.push("DELETE FROM torrents WHERE info_hash = ''".into());
            }
        }
        Dialect::Postgres => statements(
            &mut out,
            max_bytes,
            "UPDATE torrents AS t SET seeders = v.s, leechers = v.l, snatched = t.snatched + v.sn, \
             last_action = CASE WHEN v.s > 0 THEN now() ELSE t.last_action END FROM (VALUES ",
            rows.map(|r| typed(r, 4)),
            ") AS v(id, s, l, sn) WHERE t.id = v.id",
        ),
    }
    out
}

/// The largest value written to a `bigint` column (signed in PostgreSQL
/// and in some schemas): a client reporting absurd totals must not make
/// the whole write fail, for every user, forever.
const BIG: u64 = i64::MAX as u64;

fn big(v: u64) -> u64 {
    v.min(BIG)
}

/// The same for `int` columns (speeds, seconds, counts).
fn int(v: u64) -> u64 {
    v.min(i32::MAX as u64)
}

/// `column + VALUES(column)`, stopping at `BIG` instead of failing.
fn mysql_sum(column: &str) -> String {
    format!("IF({column} > {BIG} - VALUES({column}), {BIG}, {column} + VALUES({column}))")
}

/// `column + delta`, stopping at `BIG` instead of failing.
fn postgres_sum(column: &str, delta: &str) -> String {
    format!("CASE WHEN {column} > {BIG} - {delta} THEN {BIG} ELSE {column} + {delta} END")
}

/// PostgreSQL infers a VALUES list's column types from its rows: casting
/// every value to bigint keeps large numbers and small ones alike.
fn typed(row: String, columns: usize) -> String {
    let inner = &row[1..row.len() - 1];
    let cast: Vec<String> = inner
        .splitn(columns, ',')
        .map(|v| format!("{v}::bigint"))
        .collect();
    format!("({})", cast.join(","))
}

fn binary(d: Dialect, bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(hex, "{b:02x}");
    }
    match d {
        Dialect::MySql => format!("X'{hex}'"),
        Dialect::Postgres => format!("'\\x{hex}'::bytea"),
    }
}

/// Gazelle's address columns are `varchar(15)`: IPv4 only.
const ADDRESS_COLUMN: usize = 15;

/// An address as a string literal: empty for a hidden user, and for an
/// IPv6 address too long for Gazelle's column (a longer value would fail
/// the whole write in strict mode).
fn address(ip: Option<std::net::IpAddr>) -> String {
    match ip.map(|ip| ip.to_string()) {
        Some(ip) if ip.len() <= ADDRESS_COLUMN => format!("'{ip}'"),
        _ => "''".into(),
    }
}

/// `head rows... tail`, cut into several statements where one would be
/// longer than `max_bytes`.
fn statements(
    out: &mut Vec<String>,
    max_bytes: usize,
    head: &str,
    rows: impl Iterator<Item = String>,
    tail: &str,
) {
    let mut current = String::new();
    for row in rows {
        if !current.is_empty() && current.len() + row.len() + tail.len() + 1 > max_bytes {
            current.push_str(tail);
            out.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(head);
        } else {
            current.push(',');
        }
        current.push_str(&row);
    }
    if !current.is_empty() {
        current.push_str(tail);
        out.push(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::batch::{PeerRow, Snatch, TorrentRow, Transfer};

    fn batch() -> Batch {
        let mut b = Batch::default();
        for id in 1..=3 {
            b.users.insert(
                id,
                Transfer {
                    uploaded: 10 * u64::from(id),
                    downloaded: 1,
                },
            );
        }
        b.peers.insert(
            (1, 2, [0xab; 20]),
            PeerRow {
                active: true,
                uploaded: 5,
                downloaded: 6,
                remaining: 7,
                upspeed: 0,
                downspeed: 0,
                timespent: 9,
                announced: 2,
                ip: Some([10, 0, 0, 1].into()),
                mtime: 100,
            },
        );
        b.snatches.push(Snatch {
            user_id: 1,
            torrent_id: 2,
            tstamp: 3,
            ip: None,
        });
        b.torrents.insert(
            2,
            TorrentRow {
                seeders: 1,
                leechers: 0,
                snatched: 1,
            },
        );
        b
    }

    #[test]
    fn one_statement_per_table() {
        let mysql = writes(Dialect::MySql, &batch(), 1 << 20);
        // users, peers, snatches, torrents, and Ocelot's cleanup.
        assert_eq!(mysql.len(), 5, "{mysql:#?}");
        assert!(mysql[0].contains("(1,10,1),(2,20,1),(3,30,1)"));
        assert!(mysql[1].contains(&format!("X'{}'", "ab".repeat(20))));
        assert!(mysql[1].contains(",'10.0.0.1','',"), "{}", mysql[1]);
        assert!(mysql[2].contains("(1,2,3,'')"), "{}", mysql[2]);
        let pg = writes(Dialect::Postgres, &batch(), 1 << 20);
        assert_eq!(pg.len(), 4, "{pg:#?}");
        assert!(pg[0].contains("(1::bigint,10::bigint,1::bigint)"));
        assert!(pg[1].contains(&format!("'\\x{}'::bytea", "ab".repeat(20))));
        assert!(pg[1].contains("ON CONFLICT (peer_id, fid, uid)"));
        assert!(writes(Dialect::MySql, &Batch::default(), 1 << 20).is_empty());
        assert!(mysql[0].contains("IF(Uploaded > 9223372036854775807 - VALUES(Uploaded)"));
        assert!(pg[0].contains("CASE WHEN u.uploaded > 9223372036854775807 - v.up"));
        assert_eq!(address(Some("::1".parse().unwrap())), "'::1'");
        assert_eq!(
            address(Some("2001:db8:aaaa:bbbb::1".parse().unwrap())),
            "''"
        );
    }

    #[test]
    fn absurd_values_are_capped_to_the_columns() {
        let mut b = batch();
        b.users.insert(
            9,
            Transfer {
                uploaded: u64::MAX,
                downloaded: 0,
            },
        );
        if let Some(p) = b.peers.values_mut().next() {
            p.uploaded = u64::MAX;
            p.upspeed = u64::MAX;
        }
        let s = writes(Dialect::MySql, &b, 1 << 20).join(";");
        assert!(!s.contains(&u64::MAX.to_string()), "{s}");
        assert!(s.contains("(9,9223372036854775807,0)"), "{s}");
        assert!(s.contains(",9223372036854775807,6,7,2147483647,"), "{s}");
    }

    #[test]
    fn long_statements_are_cut() {
        let mut b = Batch::default();
        for id in 0..1000 {
            b.users.insert(id, Transfer::default());
        }
        let cut = writes(Dialect::MySql, &b, 1000);
        assert!(cut.len() > 10);
        assert!(cut.iter().all(|s| s.len() <= 1000 + 200));
        let rows: usize = cut.iter().map(|s| s.matches("),(").count() + 1).sum();
        assert_eq!(rows, 1000);
    }
}
