//! Ocelot's control endpoint, `/<site_password>/update?action=...`: the
//! site tells the tracker at once about new torrents, users, tokens and
//! whitelist entries (Gazelle's `Tracker::update_tracker`). This file
//! reads the query into catalog changes; the shard answers "success" and
//! hands them to the database thread, which applies them to every shard.

use super::catalog::{passkey, Change, Freeleech, Passkey};
use crate::bittorrent::InfoHash;
use crate::protocol::http::query::{percent_decode, percent_decode_exact};

/// The query's parameters, still escaped.
fn params(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query.split(|&b| b == b'&').filter_map(|pair| {
        let mut it = pair.splitn(2, |&b| b == b'=');
        Some((it.next()?, it.next().unwrap_or_default()))
    })
}

fn raw<'a>(query: &'a [u8], name: &str) -> Option<&'a [u8]> {
    params(query)
        .find(|(k, _)| *k == name.as_bytes())
        .map(|(_, v)| v)
}

fn bytes(query: &[u8], name: &'static str) -> Result<Vec<u8>, String> {
    raw(query, name)
        .and_then(percent_decode)
        .ok_or_else(|| format!("missing or malformed {name}"))
}

fn number(query: &[u8], name: &'static str) -> Result<u32, String> {
    std::str::from_utf8(&bytes(query, name)?)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("{name} is not a number"))
}

fn flag(query: &[u8], name: &'static str, default: bool) -> Result<bool, String> {
    match raw(query, name) {
        None => Ok(default),
        Some(_) => Ok(number(query, name)? != 0),
    }
}

fn info_hash(query: &[u8], name: &'static str) -> Result<InfoHash, String> {
    raw(query, name)
        .and_then(percent_decode_exact::<20>)
        .ok_or_else(|| format!("{name} is not 20 bytes"))
}

fn key(query: &[u8], name: &'static str) -> Result<Passkey, String> {
    passkey(&bytes(query, name)?).ok_or_else(|| format!("{name} is not 32 characters"))
}

fn freeleech(query: &[u8]) -> Result<Freeleech, String> {
    let flag = bytes(query, "freetorrent")?;
    Ok(Freeleech::from_flag(&String::from_utf8_lossy(&flag)))
}

/// Splits concatenated fixed-size items (`info_hashes`, `passkeys`).
fn chunks<const N: usize>(all: &[u8], name: &str) -> Result<Vec<[u8; N]>, String> {
    if all.is_empty() || !all.len().is_multiple_of(N) {
        return Err(format!("{name} is not a whole number of {N}-byte items"));
    }
    Ok(all
        .chunks_exact(N)
        .map(|c| c.try_into().unwrap_or([0; N]))
        .collect())
}

/// Reads one control request. `Ok(None)`: an action Shoal accepts and
/// does nothing for (`info_torrent`, `update_announce_interval`).
pub fn parse(query: &[u8]) -> Result<Option<Change>, String> {
    let action = bytes(query, "action")?;
    let q = query;
    let change = match action.as_slice() {
        b"add_torrent" => Change::AddTorrent {
            info_hash: info_hash(q, "info_hash")?,
            id: number(q, "id")?,
            freeleech: freeleech(q)?,
        },
        b"update_torrent" => Change::UpdateTorrents {
            info_hashes: vec![info_hash(q, "info_hash")?],
            freeleech: freeleech(q)?,
        },
        b"update_torrents" => Change::UpdateTorrents {
            info_hashes: chunks::<20>(&bytes(q, "info_hashes")?, "info_hashes")?,
            freeleech: freeleech(q)?,
        },
        b"delete_torrent" => Change::DeleteTorrent {
            info_hash: info_hash(q, "info_hash")?,
            reason: raw(q, "reason").and(number(q, "reason").ok()),
        },
        b"add_user" => Change::AddUser {
            passkey: key(q, "passkey")?,
            id: number(q, "id")?,
            protected: !flag(q, "visible", true)?,
        },
        b"update_user" => Change::UpdateUser {
            passkey: key(q, "passkey")?,
            can_leech: flag(q, "can_leech", true)?,
            protected: !flag(q, "visible", true)?,
        },
        b"remove_user" => Change::RemoveUsers(vec![key(q, "passkey")?]),
        b"remove_users" => Change::RemoveUsers(chunks::<32>(&bytes(q, "passkeys")?, "passkeys")?),
        b"change_passkey" => Change::ChangePasskey {
            old: key(q, "oldpasskey")?,
            new: key(q, "newpasskey")?,
        },
        b"add_token" => Change::AddToken {
            info_hash: info_hash(q, "info_hash")?,
            user_id: number(q, "userid")?,
        },
        b"remove_token" => Change::RemoveToken {
            info_hash: info_hash(q, "info_hash")?,
            user_id: number(q, "userid")?,
        },
        b"add_whitelist" => Change::AddWhitelist(bytes(q, "peer_id")?),
        b"remove_whitelist" => Change::RemoveWhitelist(bytes(q, "peer_id")?),
        b"edit_whitelist" => Change::EditWhitelist {
            old: bytes(q, "old_peer_id")?,
            new: bytes(q, "new_peer_id")?,
        },
        b"info_torrent" | b"update_announce_interval" | b"update_announce_jitter" => {
            return Ok(None)
        }
        other => {
            return Err(format!(
                "unknown action {:?}",
                String::from_utf8_lossy(other)
            ))
        }
    };
    Ok(Some(change))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn reads_gazelles_actions() {
        let ih = "%01".repeat(20);
        assert_eq!(
            parse(format!("action=add_torrent&info_hash={ih}&id=42&freetorrent=1").as_bytes()),
            Ok(Some(Change::AddTorrent {
                info_hash: [1; 20],
                id: 42,
                freeleech: Freeleech::Free
            }))
        );
        assert_eq!(
            parse(format!("action=add_user&passkey={PK}&id=7&visible=0").as_bytes()),
            Ok(Some(Change::AddUser {
                passkey: *b"0123456789abcdef0123456789abcdef",
                id: 7,
                protected: true
            }))
        );
        let two = format!("{PK}{}", "f".repeat(32));
        match parse(format!("action=remove_users&passkeys={two}").as_bytes()) {
            Ok(Some(Change::RemoveUsers(list))) => assert_eq!(list.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(format!("action=delete_torrent&info_hash={ih}&reason=1").as_bytes()),
            Ok(Some(Change::DeleteTorrent {
                info_hash: [1; 20],
                reason: Some(1)
            }))
        );
        assert_eq!(parse(b"action=info_torrent&info_hash=x"), Ok(None));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert!(parse(b"").unwrap_err().contains("action"));
        assert!(parse(b"action=nope")
            .unwrap_err()
            .contains("unknown action"));
        assert!(
            parse(b"action=add_torrent&info_hash=%01&id=1&freetorrent=0")
                .unwrap_err()
                .contains("info_hash")
        );
        assert!(parse(b"action=add_user&passkey=short&id=1")
            .unwrap_err()
            .contains("passkey"));
        assert!(
            parse(b"action=update_torrents&info_hashes=abc&freetorrent=0")
                .unwrap_err()
                .contains("info_hashes")
        );
    }
}
