//! One shard's accounting, as Ocelot does it: per client of a user on a
//! torrent (user id, torrent id, peer id), the totals it last reported;
//! each announce credits the difference, after freeleech and multipliers,
//! to a batch of rows for the database. Pure: no clock, no I/O.
//!
//! - A new client, or `event=started`, is credited nothing: its totals
//!   start the count. So is a client whose totals went down (it restarted
//!   and counts from 0 again); they are taken as the new base.
//! - Neutral torrents credit nothing; free torrents, freeleech tokens and
//!   `global_freeleech` credit no download. A token's waived download is
//!   added to `users_freeleeches.Downloaded`, as Ocelot does.
//! - `completed` from a leecher (or a new client) with nothing left is a
//!   snatch: a row in `xbt_snatched`, one more `torrents.Snatched`.
//! - Seeders and leechers per torrent are counted per client here, so one
//!   user's two clients are two peers and no user's client is another's.
//! - A client silent for `peer_lifetime` is dropped: its row goes inactive.

use super::batch::{Batch, PeerKey, PeerRow, Snatch};
use super::catalog::{Freeleech, Torrent, User};
use super::Map;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

/// The most one announce can be credited per direction (1 PiB).
pub const MAX_DELTA: u64 = 1 << 50;

/// What credits are multiplied by, and what is free.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates {
    pub upload_multiplier: f64,
    pub download_multiplier: f64,
    pub global_freeleech: bool,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            upload_multiplier: 1.0,
            download_multiplier: 1.0,
            global_freeleech: false,
        }
    }
}

/// One announce as accounting sees it.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    pub info_hash: [u8; 20],
    pub user: User,
    pub torrent: Torrent,
    /// The user holds a freeleech token for this torrent.
    pub token: bool,
    pub peer_id: [u8; 20],
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub started: bool,
    pub completed: bool,
    pub stopped: bool,
    /// The address as the database may show it (`None` for protected
    /// users).
    pub ip: Option<IpAddr>,
    /// Unix seconds.
    pub now: u64,
}

#[derive(Clone, Debug)]
struct Client {
    /// The time of this client's one entry in the expiry heap (entries of
    /// earlier lives of the same key are stale and skipped).
    queued: u64,
    info_hash: [u8; 20],
    uploaded: u64,
    downloaded: u64,
    left: u64,
    first: u64,
    last: u64,
    announced: u32,
    expires: u64,
    ip: Option<IpAddr>,
}

/// A client as kept over a restart (`Ledger::export`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptClient {
    pub info_hash: [u8; 20],
    pub key: PeerKey,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub first: u64,
    pub last: u64,
    pub announced: u32,
    /// Unix seconds.
    pub expires: u64,
    pub ip: Option<IpAddr>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    seeders: u32,
    leechers: u32,
}

/// What one announce credited (for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Credited {
    pub uploaded: u64,
    pub downloaded: u64,
    pub snatched: bool,
}

pub struct Ledger {
    clients: Map<PeerKey, Client>,
    tallies: Map<u32, Tally>,
    /// When clients may expire, soonest first: one entry per client, pushed
    /// when it is new. A client that announced since is pushed again at
    /// its new time when its entry comes up (so re-announces cost nothing
    /// here, and the heap holds about one entry per client).
    expiry: BinaryHeap<Reverse<(u64, PeerKey)>>,
    lifetime: u64,
    rates: Rates,
    batch: Batch,
}

impl Ledger {
    pub fn new(lifetime_secs: u64, rates: Rates) -> Self {
        Self {
            clients: Map::default(),
            tallies: Map::default(),
            expiry: BinaryHeap::new(),
            lifetime: lifetime_secs,
            rates,
            batch: Batch::default(),
        }
    }

    pub fn set_lifetime(&mut self, lifetime_secs: u64) {
        self.lifetime = lifetime_secs;
    }

    /// Clients tracked.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Accounts one announce.
    pub fn announce(&mut self, r: &Report) -> Credited {
        let key = (r.user.id, r.torrent.id, r.peer_id);
        let seeder = r.left == 0;
        let previous = self.clients.get(&key).cloned();
        let (up, down) = match &previous {
            Some(p) if !r.started && r.uploaded >= p.uploaded && r.downloaded >= p.downloaded => {
                (r.uploaded - p.uploaded, r.downloaded - p.downloaded)
            }
            _ => (0, 0),
        };
        // More than a petabyte since the last announce is no transfer but
        // a broken or lying client: a new base, as a reset is.
        let (up, down) = if up > MAX_DELTA || down > MAX_DELTA {
            (0, 0)
        } else {
            (up, down)
        };
        let snatched = r.completed && seeder && previous.as_ref().is_none_or(|p| p.left > 0);
        let credited = self.credit(r, up, down);
        let tally = self.tallies.entry(r.torrent.id).or_default();
        if let Some(p) = &previous {
            remove_from(tally, p.left == 0);
        }
        let (first, announced) = previous
            .as_ref()
            .map_or((r.now, 1), |p| (p.first, p.announced.saturating_add(1)));
        let elapsed = previous
            .as_ref()
            .map_or(0, |p| r.now.saturating_sub(p.last));
        let speed = |bytes: u64| bytes.checked_div(elapsed).unwrap_or(0);
        self.batch.peers.insert(
            key,
            PeerRow {
                active: !r.stopped,
                uploaded: r.uploaded,
                downloaded: r.downloaded,
                remaining: r.left,
                upspeed: speed(up),
                downspeed: speed(down),
                timespent: r.now.saturating_sub(first),
                announced,
                ip: r.ip,
                mtime: r.now,
            },
        );
        if r.stopped {
            self.clients.remove(&key);
        } else {
            if seeder {
                tally.seeders += 1;
            } else {
                tally.leechers += 1;
            }
            let expires = r.now + self.lifetime;
            self.clients.insert(
                key,
                Client {
                    queued: previous.as_ref().map_or(expires, |p| p.queued),
                    info_hash: r.info_hash,
                    uploaded: r.uploaded,
                    downloaded: r.downloaded,
                    left: r.left,
                    first,
                    last: r.now,
                    announced,
                    expires,
                    ip: r.ip,
                },
            );
            if previous.is_none() {
                self.expiry.push(Reverse((expires, key)));
            }
        }
        let tally = *tally;
        if snatched {
            self.batch.snatches.push(Snatch {
                user_id: r.user.id,
                torrent_id: r.torrent.id,
                tstamp: r.now,
                ip: r.ip,
            });
        }
        self.record_torrent(r.torrent.id, tally, u32::from(snatched));
        Credited {
            snatched,
            ..credited
        }
    }

    fn credit(&mut self, r: &Report, up: u64, down: u64) -> Credited {
        let rates = self.rates;
        let neutral = r.torrent.freeleech == Freeleech::Neutral;
        let free =
            neutral || r.torrent.freeleech == Freeleech::Free || r.token || rates.global_freeleech;
        let scale = |bytes: u64, m: f64| (bytes as f64 * m) as u64;
        let credited = Credited {
            uploaded: if neutral {
                0
            } else {
                scale(up, rates.upload_multiplier)
            },
            downloaded: if free {
                0
            } else {
                scale(down, rates.download_multiplier)
            },
            snatched: false,
        };
        if credited.uploaded > 0 || credited.downloaded > 0 {
            let e = self.batch.users.entry(r.user.id).or_default();
            e.uploaded = e.uploaded.saturating_add(credited.uploaded);
            e.downloaded = e.downloaded.saturating_add(credited.downloaded);
        }
        if r.token && !neutral && down > 0 {
            let e = self
                .batch
                .tokens
                .entry((r.user.id, r.torrent.id))
                .or_default();
            *e = e.saturating_add(down);
        }
        credited
    }

    fn record_torrent(&mut self, id: u32, tally: Tally, snatched: u32) {
        let row = self.batch.torrents.entry(id).or_default();
        row.seeders = tally.seeders;
        row.leechers = tally.leechers;
        row.snatched += snatched;
        if tally.seeders == 0 && tally.leechers == 0 {
            self.tallies.remove(&id);
        }
    }

    /// Drops clients silent past `now` (Unix seconds), looking at `budget`
    /// entries at most (the rest wait for the next call): their rows go
    /// inactive and their torrents' counts down. Returns how many.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let mut dropped = 0;
        for _ in 0..budget {
            let Some(&Reverse((expires, key))) = self.expiry.peek() else {
                break;
            };
            if expires > now {
                break;
            }
            self.expiry.pop();
            let Some(client) = self.clients.get_mut(&key) else {
                continue;
            };
            if client.queued != expires {
                // An entry of an earlier life of this key (it stopped and
                // came back): the client has its own entry.
                continue;
            }
            if client.expires > now {
                client.queued = client.expires;
                self.expiry.push(Reverse((client.expires, key)));
                continue;
            }
            let Some(client) = self.clients.remove(&key) else {
                continue;
            };
            dropped += 1;
            let tally = self.tallies.entry(key.1).or_default();
            remove_from(tally, client.left == 0);
            let tally = *tally;
            self.batch.peers.insert(
                key,
                PeerRow {
                    active: false,
                    uploaded: client.uploaded,
                    downloaded: client.downloaded,
                    remaining: client.left,
                    upspeed: 0,
                    downspeed: 0,
                    timespent: client.last.saturating_sub(client.first),
                    announced: client.announced,
                    ip: client.ip,
                    mtime: client.last,
                },
            );
            self.record_torrent(key.1, tally, 0);
        }
        dropped
    }

    /// Every client with what it last reported, to be kept over a
    /// restart (so its next announce is credited from there).
    pub fn export(&self) -> Vec<KeptClient> {
        self.clients
            .iter()
            .map(|(key, c)| KeptClient {
                info_hash: c.info_hash,
                key: *key,
                uploaded: c.uploaded,
                downloaded: c.downloaded,
                left: c.left,
                first: c.first,
                last: c.last,
                announced: c.announced,
                expires: c.expires,
                ip: c.ip,
            })
            .collect()
    }

    /// Takes back clients a previous run kept; those expired by `now`
    /// (Unix seconds) are left out.
    pub fn import(&mut self, kept: Vec<KeptClient>, now: u64) {
        for k in kept.into_iter().filter(|k| k.expires > now) {
            if self.clients.contains_key(&k.key) {
                continue;
            }
            let tally = self.tallies.entry(k.key.1).or_default();
            if k.left == 0 {
                tally.seeders += 1;
            } else {
                tally.leechers += 1;
            }
            self.expiry.push(Reverse((k.expires, k.key)));
            let queued = k.expires;
            self.clients.insert(
                k.key,
                Client {
                    info_hash: k.info_hash,
                    uploaded: k.uploaded,
                    downloaded: k.downloaded,
                    left: k.left,
                    first: k.first,
                    last: k.last,
                    announced: k.announced,
                    expires: k.expires,
                    queued,
                    ip: k.ip,
                },
            );
        }
    }

    /// The rows gathered since the last call.
    pub fn take_batch(&mut self) -> Batch {
        let next = self.batch.empty_like();
        std::mem::replace(&mut self.batch, next)
    }

    /// Gives back a batch that could not be handed on (merged before what
    /// came since).
    pub fn return_batch(&mut self, mut earlier: Batch) {
        earlier.merge(std::mem::take(&mut self.batch));
        self.batch = earlier;
    }
}

fn remove_from(tally: &mut Tally, seeder: bool) {
    if seeder {
        tally.seeders = tally.seeders.saturating_sub(1);
    } else {
        tally.leechers = tally.leechers.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::batch::{TorrentRow, Transfer};

    const USER: User = User {
        id: 1,
        can_leech: true,
        protected: false,
    };
    const TORRENT: Torrent = Torrent {
        id: 10,
        freeleech: Freeleech::Normal,
    };

    fn report(uploaded: u64, downloaded: u64, left: u64, now: u64) -> Report {
        Report {
            info_hash: [7; 20],
            user: USER,
            torrent: TORRENT,
            token: false,
            peer_id: [b'p'; 20],
            uploaded,
            downloaded,
            left,
            started: false,
            completed: false,
            stopped: false,
            ip: Some(IpAddr::from([127, 0, 0, 1])),
            now,
        }
    }

    fn ledger() -> Ledger {
        Ledger::new(3600, Rates::default())
    }

    #[test]
    fn deltas_are_credited_from_the_second_announce() {
        let mut l = ledger();
        let first = l.announce(&Report {
            started: true,
            ..report(100, 200, 50, 0)
        });
        assert_eq!(first, Credited::default());
        let second = l.announce(&report(150, 260, 10, 10));
        assert_eq!((second.uploaded, second.downloaded), (50, 60));
        let b = l.take_batch();
        assert_eq!(
            b.users[&1],
            Transfer {
                uploaded: 50,
                downloaded: 60
            }
        );
        let row = &b.peers[&(1, 10, [b'p'; 20])];
        assert_eq!((row.upspeed, row.downspeed, row.announced), (5, 6, 2));
        assert_eq!(b.torrents[&10].leechers, 1);
    }

    #[test]
    fn a_client_restart_is_a_new_base_not_a_credit() {
        let mut l = ledger();
        l.announce(&report(1000, 1000, 5, 0));
        // Counters went down: the client restarted.
        let c = l.announce(&report(10, 10, 5, 1));
        assert_eq!(c, Credited::default());
        let c = l.announce(&report(30, 15, 5, 2));
        assert_eq!((c.uploaded, c.downloaded), (20, 5));
        // `started` resets as well.
        let c = l.announce(&Report {
            started: true,
            ..report(500, 500, 5, 3)
        });
        assert_eq!(c, Credited::default());
    }

    #[test]
    fn an_absurd_jump_is_a_new_base_not_a_credit() {
        let mut l = ledger();
        l.announce(&report(0, 0, 5, 0));
        let c = l.announce(&report(u64::MAX, 10, 5, 1));
        assert_eq!(c, Credited::default());
        let c = l.announce(&report(u64::MAX, 20, 5, 2));
        assert_eq!((c.uploaded, c.downloaded), (0, 10));
    }

    #[test]
    fn freeleech_neutral_tokens_and_multipliers() {
        let run = |freeleech, token, rates: Rates| {
            let mut l = Ledger::new(3600, rates);
            let r = |up, down, now| Report {
                torrent: Torrent { id: 10, freeleech },
                token,
                ..report(up, down, 5, now)
            };
            l.announce(&r(0, 0, 0));
            let c = l.announce(&r(1000, 100, 1));
            (c.uploaded, c.downloaded, l.take_batch())
        };
        let (up, down, _) = run(Freeleech::Normal, false, Rates::default());
        assert_eq!((up, down), (1000, 100));
        let (up, down, _) = run(Freeleech::Free, false, Rates::default());
        assert_eq!((up, down), (1000, 0));
        let (up, down, b) = run(Freeleech::Neutral, false, Rates::default());
        assert_eq!((up, down), (0, 0));
        assert!(b.users.is_empty());
        let (up, down, b) = run(Freeleech::Normal, true, Rates::default());
        assert_eq!((up, down), (1000, 0));
        assert_eq!(b.tokens[&(1, 10)], 100);
        let doubled = Rates {
            upload_multiplier: 2.0,
            download_multiplier: 0.5,
            global_freeleech: false,
        };
        let (up, down, _) = run(Freeleech::Normal, false, doubled);
        assert_eq!((up, down), (2000, 50));
        let global = Rates {
            global_freeleech: true,
            ..Rates::default()
        };
        let (up, down, _) = run(Freeleech::Normal, false, global);
        assert_eq!((up, down), (1000, 0));
    }

    #[test]
    fn completion_snatches_once_and_moves_to_seeders() {
        let mut l = ledger();
        l.announce(&report(0, 0, 100, 0));
        let done = Report {
            completed: true,
            ..report(0, 100, 0, 5)
        };
        assert!(l.announce(&done).snatched);
        // A second `completed` from a seeder is no snatch.
        assert!(!l.announce(&Report { now: 6, ..done }).snatched);
        let b = l.take_batch();
        assert_eq!(b.snatches.len(), 1);
        assert_eq!(
            b.torrents[&10],
            TorrentRow {
                seeders: 1,
                leechers: 0,
                snatched: 1
            }
        );
    }

    #[test]
    fn two_clients_of_one_user_and_other_users_are_apart() {
        let mut l = ledger();
        l.announce(&report(0, 0, 5, 0));
        l.announce(&Report {
            peer_id: [b'q'; 20],
            ..report(0, 0, 0, 0)
        });
        l.announce(&Report {
            user: User { id: 2, ..USER },
            ..report(0, 0, 5, 0)
        });
        let b = l.take_batch();
        assert_eq!((b.torrents[&10].seeders, b.torrents[&10].leechers), (1, 2));
        // User 2 reporting big totals credits user 2 only, from its own base.
        let c = l.announce(&Report {
            user: User { id: 2, ..USER },
            ..report(500, 0, 5, 1)
        });
        assert_eq!(c.uploaded, 500);
        let b = l.take_batch();
        assert_eq!(b.users.keys().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn stop_and_expiry_take_clients_out() {
        let mut l = Ledger::new(100, Rates::default());
        l.announce(&report(0, 0, 5, 0));
        l.announce(&Report {
            peer_id: [b'q'; 20],
            ..report(0, 0, 0, 0)
        });
        l.announce(&Report {
            stopped: true,
            ..report(10, 0, 5, 50)
        });
        let b = l.take_batch();
        assert!(!b.peers[&(1, 10, [b'p'; 20])].active);
        assert_eq!(b.torrents[&10].leechers, 0);
        assert_eq!(l.expire(99, usize::MAX), 0);
        assert_eq!(l.expire(100, usize::MAX), 1);
        assert_eq!(l.clients(), 0);
        let b = l.take_batch();
        assert!(!b.peers[&(1, 10, [b'q'; 20])].active);
        assert_eq!(b.torrents[&10], TorrentRow::default());
    }

    #[test]
    fn clients_kept_over_a_restart_are_credited_from_their_last_report() {
        let mut before = ledger();
        before.announce(&report(100, 0, 5, 0));
        before.announce(&Report {
            peer_id: [b'q'; 20],
            ..report(0, 0, 0, 0)
        });
        let kept = before.export();
        assert_eq!(kept.len(), 2);
        let mut after = ledger();
        after.import(kept.clone(), 10);
        let c = after.announce(&report(150, 0, 5, 20));
        assert_eq!(c.uploaded, 50);
        let b = after.take_batch();
        assert_eq!((b.torrents[&10].seeders, b.torrents[&10].leechers), (1, 1));
        // Expired ones are not taken back.
        let mut late = ledger();
        late.import(kept, 3600);
        assert_eq!(late.clients(), 0);
    }

    #[test]
    fn a_reannounce_postpones_expiry() {
        let mut l = Ledger::new(100, Rates::default());
        l.announce(&report(0, 0, 5, 0));
        l.announce(&report(0, 0, 5, 60));
        assert_eq!(l.expire(100, usize::MAX), 0);
        assert_eq!(l.expire(159, usize::MAX), 0);
        assert_eq!(l.expire(160, usize::MAX), 1);
    }

    #[test]
    fn a_client_that_stops_and_comes_back_keeps_one_live_entry() {
        let mut l = Ledger::new(100, Rates::default());
        for round in 0..5 {
            let t = round * 10;
            l.announce(&report(0, 0, 5, t));
            l.announce(&Report {
                stopped: true,
                ..report(0, 0, 5, t + 1)
            });
        }
        l.announce(&report(0, 0, 5, 60));
        // Stale entries of earlier lives go as they come up.
        assert_eq!(l.expire(150, usize::MAX), 0);
        assert_eq!(l.expiry.len(), 1);
        for t in [200, 300] {
            l.announce(&report(0, 0, 5, t));
            l.expire(t + 99, usize::MAX);
            assert_eq!(l.expiry.len(), 1);
        }
        assert_eq!(l.expire(400, usize::MAX), 1);
        assert!(l.expiry.is_empty());
    }

    #[test]
    fn the_expiry_heap_holds_one_entry_per_client_not_per_announce() {
        let mut l = Ledger::new(100, Rates::default());
        for now in 0..1000 {
            l.announce(&report(now, 0, 5, now));
        }
        assert_eq!(l.expiry.len(), 1);
        // A stopped client leaves an entry that is skipped.
        l.announce(&Report {
            stopped: true,
            ..report(1000, 0, 5, 1000)
        });
        assert_eq!(l.expire(5000, usize::MAX), 0);
        assert!(l.expiry.is_empty());
    }
}
