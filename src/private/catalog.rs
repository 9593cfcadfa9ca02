//! What private mode knows of the site: users by passkey, registered
//! torrents, freeleech tokens and the client whitelist, as loaded from the
//! database and changed by the control endpoint. Shards read one immutable
//! version each (an `Arc`, swapped at their tick); only the database thread
//! changes its own copy and hands out new versions.

use super::{Map, Set};
use crate::bittorrent::InfoHash;

/// A passkey: Gazelle's `torrent_pass`, 32 characters.
pub type Passkey = [u8; 32];

/// Reads a passkey from a route segment: exactly 32 bytes.
pub fn passkey(bytes: &[u8]) -> Option<Passkey> {
    bytes.try_into().ok()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct User {
    pub id: u32,
    pub can_leech: bool,
    /// Gazelle's `Visible = '0'` (or a hidden IP): the address is never
    /// written to the database for this user.
    pub protected: bool,
}

/// `torrents.FreeTorrent`: what a torrent's transfer counts for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Freeleech {
    /// '0': upload and download count.
    #[default]
    Normal,
    /// '1': only upload counts.
    Free,
    /// '2': neither counts.
    Neutral,
}

impl Freeleech {
    /// Ocelot's reading: "1" free, "2" neutral, anything else normal.
    pub fn from_flag(flag: &str) -> Self {
        match flag.trim() {
            "1" => Freeleech::Free,
            "2" => Freeleech::Neutral,
            _ => Freeleech::Normal,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Torrent {
    pub id: u32,
    pub freeleech: Freeleech,
}

/// One version of the site's data.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Catalog {
    pub users: Map<Passkey, User>,
    pub torrents: Map<InfoHash, Torrent>,
    /// Freeleech tokens in use: (user id, torrent id).
    pub tokens: Set<(u32, u32)>,
    /// Peer id prefixes allowed; empty: every client.
    pub whitelist: Vec<Box<[u8]>>,
    /// Torrents the site deleted with a reason code (control endpoint):
    /// announces get "Unregistered torrent: <reason>".
    pub deleted: Map<InfoHash, u32>,
    /// Whether this version came from the database (a start with the
    /// database down has none yet).
    pub loaded: bool,
}

/// A change the site asks for through the control endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    AddTorrent {
        info_hash: InfoHash,
        id: u32,
        freeleech: Freeleech,
    },
    UpdateTorrents {
        info_hashes: Vec<InfoHash>,
        freeleech: Freeleech,
    },
    DeleteTorrent {
        info_hash: InfoHash,
        reason: Option<u32>,
    },
    AddUser {
        passkey: Passkey,
        id: u32,
        protected: bool,
    },
    UpdateUser {
        passkey: Passkey,
        can_leech: bool,
        protected: bool,
    },
    RemoveUsers(Vec<Passkey>),
    ChangePasskey {
        old: Passkey,
        new: Passkey,
    },
    AddToken {
        info_hash: InfoHash,
        user_id: u32,
    },
    RemoveToken {
        info_hash: InfoHash,
        user_id: u32,
    },
    AddWhitelist(Vec<u8>),
    RemoveWhitelist(Vec<u8>),
    EditWhitelist {
        old: Vec<u8>,
        new: Vec<u8>,
    },
}

impl Catalog {
    pub fn user(&self, key: &[u8]) -> Option<User> {
        self.users.get(&passkey(key)?).copied()
    }

    /// Whether a peer id may announce: it starts with a whitelisted
    /// prefix, or there is no whitelist.
    pub fn client_allowed(&self, peer_id: &[u8]) -> bool {
        self.whitelist.is_empty() || self.whitelist.iter().any(|p| peer_id.starts_with(p))
    }

    /// Applies a control change. Unknown targets are ignored (Ocelot
    /// answers "success" either way and logs).
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::AddTorrent {
                info_hash,
                id,
                freeleech,
            } => {
                self.deleted.remove(&info_hash);
                self.torrents.insert(info_hash, Torrent { id, freeleech });
            }
            Change::UpdateTorrents {
                info_hashes,
                freeleech,
            } => {
                for h in info_hashes {
                    if let Some(t) = self.torrents.get_mut(&h) {
                        t.freeleech = freeleech;
                    }
                }
            }
            Change::DeleteTorrent { info_hash, reason } => {
                if let Some(t) = self.torrents.remove(&info_hash) {
                    self.tokens.retain(|&(_, tid)| tid != t.id);
                }
                if let Some(reason) = reason {
                    self.deleted.insert(info_hash, reason);
                }
            }
            Change::AddUser {
                passkey,
                id,
                protected,
            } => {
                self.users.insert(
                    passkey,
                    User {
                        id,
                        can_leech: true,
                        protected,
                    },
                );
            }
            Change::UpdateUser {
                passkey,
                can_leech,
                protected,
            } => {
                if let Some(u) = self.users.get_mut(&passkey) {
                    u.can_leech = can_leech;
                    u.protected = protected;
                }
            }
            Change::RemoveUsers(passkeys) => {
                for p in passkeys {
                    self.users.remove(&p);
                }
            }
            Change::ChangePasskey { old, new } => {
                if let Some(u) = self.users.remove(&old) {
                    self.users.insert(new, u);
                }
            }
            Change::AddToken { info_hash, user_id } => {
                if let Some(t) = self.torrents.get(&info_hash) {
                    self.tokens.insert((user_id, t.id));
                }
            }
            Change::RemoveToken { info_hash, user_id } => {
                if let Some(t) = self.torrents.get(&info_hash) {
                    self.tokens.remove(&(user_id, t.id));
                }
            }
            Change::AddWhitelist(prefix) => {
                if !self.whitelist.iter().any(|p| **p == *prefix) {
                    self.whitelist.push(prefix.into());
                }
            }
            Change::RemoveWhitelist(prefix) => self.whitelist.retain(|p| **p != *prefix),
            Change::EditWhitelist { old, new } => {
                self.whitelist.retain(|p| **p != *old);
                if !self.whitelist.iter().any(|p| **p == *new) {
                    self.whitelist.push(new.into());
                }
            }
        }
    }
}

/// Ocelot's names for deletion reason codes (worker.cpp `get_del_reason`).
pub fn deletion_reason(code: u32) -> &'static str {
    match code {
        0 => "Dupe",
        1 => "Trump",
        2 => "Bad File Names",
        3 => "Bad Folder Names",
        4 => "Bad Tags",
        5 => "Disallowed Format",
        6 => "Discs Missing",
        7 => "Discography",
        8 => "Edited Log",
        9 => "Inaccurate Bitrate",
        10 => "Low Bitrate",
        11 => "Mutt Rip",
        12 => "Disallowed Source",
        13 => "Encode Errors",
        14 => "Specifically Banned",
        15 => "Tracks Missing",
        16 => "Transcode",
        17 => "Cassette Approval",
        18 => "Lossy Master Approval",
        19 => "Lossy WEB Approval",
        20 => "Missing Lineage",
        21 => "Missing Log",
        22 => "Missing Cue",
        23 => "Not on Source",
        24 => "Bad Vinyl",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PK: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn control_changes_apply() {
        let mut c = Catalog::default();
        c.apply(Change::AddUser {
            passkey: *PK,
            id: 7,
            protected: false,
        });
        assert_eq!(c.user(PK).unwrap().id, 7);
        assert!(c.user(b"short").is_none());
        c.apply(Change::UpdateUser {
            passkey: *PK,
            can_leech: false,
            protected: true,
        });
        assert!(!c.user(PK).unwrap().can_leech);
        let new = *b"ffffffffffffffffffffffffffffffff";
        c.apply(Change::ChangePasskey { old: *PK, new });
        assert!(c.user(PK).is_none() && c.user(&new).is_some());

        c.apply(Change::AddTorrent {
            info_hash: [1; 20],
            id: 3,
            freeleech: Freeleech::Normal,
        });
        c.apply(Change::AddToken {
            info_hash: [1; 20],
            user_id: 7,
        });
        assert!(c.tokens.contains(&(7, 3)));
        c.apply(Change::UpdateTorrents {
            info_hashes: vec![[1; 20], [9; 20]],
            freeleech: Freeleech::Neutral,
        });
        assert_eq!(c.torrents[&[1; 20]].freeleech, Freeleech::Neutral);
        c.apply(Change::DeleteTorrent {
            info_hash: [1; 20],
            reason: Some(1),
        });
        assert!(c.torrents.is_empty() && c.tokens.is_empty());
        assert_eq!(deletion_reason(c.deleted[&[1; 20]]), "Trump");
    }

    #[test]
    fn whitelist_is_a_prefix_match_and_empty_allows_all() {
        let mut c = Catalog::default();
        assert!(c.client_allowed(b"-XX0000-aaaaaaaaaaaa"));
        c.apply(Change::AddWhitelist(b"-TR2".to_vec()));
        assert!(c.client_allowed(b"-TR2940-aaaaaaaaaaaa"));
        assert!(!c.client_allowed(b"-XX0000-aaaaaaaaaaaa"));
        c.apply(Change::EditWhitelist {
            old: b"-TR2".to_vec(),
            new: b"-XX".to_vec(),
        });
        assert!(c.client_allowed(b"-XX0000-aaaaaaaaaaaa"));
        c.apply(Change::RemoveWhitelist(b"-XX".to_vec()));
        assert!(c.client_allowed(b"anything"));
    }
}
