//! The Redis service thread: every `sync_interval` it pushes the changes
//! the shards handed over (one stream entry per push, whatever the
//! announce rate) and pulls the entries other instances added, routing
//! each change to the shard that owns its torrent. Blocking I/O, on its own
//! thread; the shards only ever `try_send`/`try_recv`.
//!
//! Keys (under `key_prefix`):
//! - `<prefix>:changes`: a stream; each entry `i` (the writing instance's
//!   id) and `d` (a batch, `wire.rs`). Trimmed to the last peer lifetime
//!   (`MINID`), so it holds every live peer's latest announce: an instance
//!   that starts reads it whole and has the cluster's swarms.
//! - `<prefix>:downloaded`: a hash, infohash to completions, for starting
//!   instances (a trimmed stream forgets old completions).

use super::wire::{self, Change};
use super::{Remote, ServiceEnds, Stats};
use crate::config::RedisConfig;
use crate::placement::owner::Owner;
use redis::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Changes per stream entry: about 600 KB at most.
const ENTRY_CHANGES: usize = 8192;
/// Adds completions to the `downloaded` hash: ARGV is infohash, count,
/// infohash, count...
const ADD_COMPLETIONS: &str =
    "for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end";
/// Entries read per XREAD.
const READ_COUNT: usize = 64;

pub struct Service {
    config: RedisConfig,
    /// This process's id in the stream: its own entries are skipped.
    instance: u64,
    owner: Owner,
    /// Peer lifetime, for trimming the stream.
    lifetime: Duration,
    ends: ServiceEnds,
    replication: Arc<super::Replication>,
    connection: Option<redis::Connection>,
    /// The last stream id applied (`None`: nothing read yet).
    last_id: Option<String>,
    pending: Vec<Change>,
    /// What could not be handed to a full shard inbox yet.
    undelivered: Vec<VecDeque<Remote>>,
    outage_since: Option<Instant>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Stream ids are `ms-seq`; compares two of them.
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

impl Service {
    pub fn new(
        config: RedisConfig,
        owner: Owner,
        lifetime: Duration,
        ends: ServiceEnds,
        replication: Arc<super::Replication>,
    ) -> Self {
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).expect("the OS random source failed");
        let undelivered = (0..ends.inboxes.len()).map(|_| VecDeque::new()).collect();
        super::STATS.enabled.store(true, Ordering::Relaxed);
        Self {
            config,
            instance: u64::from_le_bytes(id),
            owner,
            lifetime,
            ends,
            replication,
            connection: None,
            last_id: None,
            pending: Vec::new(),
            undelivered,
            outage_since: None,
        }
    }

    fn stats(&self) -> &'static Stats {
        &super::STATS
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.config.key_prefix)
    }

    /// Runs until every shard stopped, then pushes what is left (once, if
    /// Redis is up).
    pub fn run(mut self) {
        let mut next_sync = Instant::now();
        while !self.replication.are_shards_gone() {
            self.take_from_shards();
            self.deliver();
            if Instant::now() >= next_sync {
                next_sync = Instant::now() + self.config.sync_interval;
                self.sync();
            }
            std::thread::sleep(Duration::from_millis(5).min(self.config.sync_interval));
        }
        // The shards' last changes, then one last push.
        self.take_from_shards();
        if self.connection.is_some() && !self.pending.is_empty() {
            if let Err(e) = self.push() {
                tracing::warn!("redis: the last changes were not pushed: {e}");
            }
        }
    }

    fn take_from_shards(&mut self) {
        while let Ok(batch) = self.ends.outbox.try_recv() {
            self.pending.extend(batch);
        }
        if self.pending.len() > self.config.max_pending {
            self.coalesce();
        }
        self.stats()
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
    }

    /// Keeps only each peer's latest change (completions are kept: they
    /// add up).
    fn coalesce(&mut self) {
        let before = self.pending.len();
        let mut latest: HashMap<_, usize> = HashMap::with_capacity(before);
        for (i, c) in self.pending.iter().enumerate() {
            latest.insert(
                (c.update.info_hash, c.update.peer.ip, c.update.peer.port),
                i,
            );
        }
        let mut i = 0;
        self.pending.retain(|c| {
            let keep = c.update.completed
                || latest[&(c.update.info_hash, c.update.peer.ip, c.update.peer.port)] == i;
            i += 1;
            keep
        });
        Stats::add(
            &self.stats().coalesced,
            (before - self.pending.len()) as u64,
        );
    }

    /// One exchange: connect if needed, push, pull. A failure drops the
    /// connection, keeps the changes and is logged once per outage.
    fn sync(&mut self) {
        let result = self
            .connect()
            .and_then(|()| self.push())
            .and_then(|()| self.pull());
        match result {
            Ok(()) => {
                if let Some(since) = self.outage_since.take() {
                    tracing::info!(
                        after_s = since.elapsed().as_secs(),
                        "redis: back; pending changes pushed"
                    );
                }
                self.stats().up.store(1, Ordering::Relaxed);
            }
            Err(e) => {
                Stats::add(&self.stats().errors, 1);
                self.stats().up.store(0, Ordering::Relaxed);
                self.connection = None;
                if self.outage_since.is_none() {
                    self.outage_since = Some(Instant::now());
                    tracing::warn!(
                        "redis: unreachable, serving from memory and keeping changes: {e}"
                    );
                }
            }
        }
    }

    fn connect(&mut self) -> redis::RedisResult<()> {
        if self.connection.is_some() {
            return Ok(());
        }
        let client = redis::Client::open(self.config.url.as_str())?;
        let connection = client.get_connection_with_timeout(self.config.connect_timeout)?;
        connection.set_read_timeout(Some(self.config.command_timeout))?;
        connection.set_write_timeout(Some(self.config.command_timeout))?;
        self.connection = Some(connection);
        self.on_connect()
    }

    /// On a new connection: the first one loads the cluster's state; a
    /// later one notices a Redis that lost its data (an emptied stream)
    /// and reads the new stream from its start.
    fn on_connect(&mut self) -> redis::RedisResult<()> {
        let changes = self.key("changes");
        let downloaded = self.key("downloaded");
        let con = self.connection.as_mut().expect("connected");
        let (newest, counts): (Value, Value) = redis::pipe()
            .atomic()
            .cmd("XREVRANGE")
            .arg(&changes)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .cmd("HGETALL")
            .arg(&downloaded)
            .query(con)?;
        Stats::add(&self.stats().commands, 2);
        let newest = entries(&newest).next().map(|(id, _, _)| id);
        match (&self.last_id, newest) {
            (None, newest) => {
                // Start-up: every live peer, without the completions the
                // hash already counts; then the hash.
                let upto = newest.unwrap_or_else(|| "0-0".into());
                self.read_stream("0-0", Some(&upto))?;
                self.route_downloaded(&counts);
                self.last_id = Some(upto);
            }
            (Some(last), newest) => {
                if newest.as_deref().is_none_or(|n| id_key(n) < id_key(last)) {
                    tracing::warn!(
                        "redis: the stream was reset (Redis lost its data); reading it anew"
                    );
                    self.last_id = Some("0-0".into());
                }
            }
        }
        Ok(())
    }

    /// Pushes the pending changes: one pipeline, one stream entry per
    /// `ENTRY_CHANGES`, and the completions for starting instances.
    fn push(&mut self) -> redis::RedisResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let changes = self.key("changes");
        let downloaded = self.key("downloaded");
        let min_id = unix_ms().saturating_sub(self.lifetime.as_millis() as u64);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut commands = 0;
        let mut blob = Vec::new();
        let mut completions: HashMap<[u8; 20], i64> = HashMap::new();
        for chunk in self.pending.chunks(ENTRY_CHANGES) {
            blob.clear();
            for c in chunk {
                wire::encode(c, &mut blob);
                if c.update.completed && !c.stopped {
                    *completions.entry(c.update.info_hash).or_default() += 1;
                }
            }
            pipe.cmd("XADD")
                .arg(&changes)
                .arg("MINID")
                .arg("~")
                .arg(min_id)
                .arg("*")
                .arg("i")
                .arg(self.instance)
                .arg("d")
                .arg(blob.as_slice())
                .ignore();
            commands += 1;
        }
        if !completions.is_empty() {
            // One command for all of them, however many torrents.
            let add = pipe
                .cmd("EVAL")
                .arg(ADD_COMPLETIONS)
                .arg(1)
                .arg(&downloaded);
            for (info_hash, n) in completions {
                add.arg(&info_hash[..]).arg(n);
            }
            add.ignore();
            commands += 1;
        }
        let con = self.connection.as_mut().expect("connected");
        pipe.query::<()>(con)?;
        Stats::add(&self.stats().commands, commands);
        Stats::add(&self.stats().pushed, self.pending.len() as u64);
        self.pending.clear();
        self.stats().pending.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Applies the entries other instances added since the last pull.
    fn pull(&mut self) -> redis::RedisResult<()> {
        if self.shards_behind() {
            return Ok(());
        }
        let from = self.last_id.clone().unwrap_or_else(|| "0-0".into());
        self.read_stream(&from, None)
    }

    /// Reads the stream after `from` (up to `upto`, with completions
    /// dropped, when given) and routes other instances' changes.
    fn read_stream(&mut self, from: &str, upto: Option<&str>) -> redis::RedisResult<()> {
        let changes = self.key("changes");
        let mut from = from.to_string();
        loop {
            let con = self.connection.as_mut().expect("connected");
            let reply: Value = match upto {
                Some(upto) => redis::cmd("XRANGE")
                    .arg(&changes)
                    .arg(format!("({from}"))
                    .arg(upto)
                    .arg("COUNT")
                    .arg(READ_COUNT)
                    .query(con)?,
                None => redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(READ_COUNT)
                    .arg("STREAMS")
                    .arg(&changes)
                    .arg(&from)
                    .query(con)?,
            };
            Stats::add(&self.stats().commands, 1);
            let list = match upto {
                Some(_) => reply,
                // XREAD: [[key, [entries]]], or nil when nothing is new.
                None => stream_of(reply),
            };
            let mut read = 0;
            let mut decoded = Vec::new();
            for (id, instance, blob) in entries(&list) {
                read += 1;
                from = id;
                if instance == Some(self.instance) {
                    continue;
                }
                decoded.clear();
                wire::decode(&blob, &mut decoded);
                if upto.is_some() {
                    for c in &mut decoded {
                        c.update.completed = false;
                    }
                }
                self.route(&decoded);
            }
            if upto.is_none() {
                self.last_id = Some(from.clone());
            }
            if read < READ_COUNT {
                return Ok(());
            }
        }
    }

    fn route(&mut self, changes: &[Change]) {
        Stats::add(&self.stats().pulled, changes.len() as u64);
        let mut per_shard: Vec<Vec<Change>> = vec![Vec::new(); self.undelivered.len()];
        for c in changes {
            per_shard[self.owner.of(&c.update.info_hash)].push(*c);
        }
        for (shard, batch) in per_shard.into_iter().enumerate() {
            if !batch.is_empty() {
                self.undelivered[shard].push_back(Remote::Changes(batch));
            }
        }
        self.deliver();
    }

    fn route_downloaded(&mut self, counts: &Value) {
        let mut per_shard: Vec<Vec<([u8; 20], u32)>> = vec![Vec::new(); self.undelivered.len()];
        for (field, value) in pairs(counts) {
            let (Ok(info_hash), Some(n)) = (<[u8; 20]>::try_from(field.as_slice()), value) else {
                continue;
            };
            per_shard[self.owner.of(&info_hash)]
                .push((info_hash, n.min(u64::from(u32::MAX)) as u32));
        }
        for (shard, batch) in per_shard.into_iter().enumerate() {
            if !batch.is_empty() {
                self.undelivered[shard].push_back(Remote::Downloaded(batch));
            }
        }
        self.deliver();
    }

    /// Hands what waits to the shards' inboxes, in order, as room allows.
    fn deliver(&mut self) {
        for (shard, waiting) in self.undelivered.iter_mut().enumerate() {
            while let Some(message) = waiting.pop_front() {
                match self.ends.inboxes[shard].try_send(message) {
                    Ok(()) => {}
                    Err(TrySendError::Full(m)) => {
                        waiting.push_front(m);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => waiting.clear(),
                }
            }
        }
    }

    /// Whether a shard is behind: pulling more would only queue it here.
    fn shards_behind(&self) -> bool {
        self.undelivered.iter().any(|w| w.len() > 256)
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn list(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// XREAD's reply for one stream: its entries (nil: none).
fn stream_of(reply: Value) -> Value {
    match reply {
        Value::Array(mut streams) if !streams.is_empty() => match streams.swap_remove(0) {
            Value::Array(mut pair) if pair.len() == 2 => pair.swap_remove(1),
            _ => Value::Nil,
        },
        Value::Map(mut streams) if !streams.is_empty() => streams.swap_remove(0).1,
        _ => Value::Nil,
    }
}

/// A list of stream entries as (id, writer instance, batch); entries of
/// another shape are skipped.
fn entries(v: &Value) -> impl Iterator<Item = (String, Option<u64>, Vec<u8>)> + '_ {
    list(v).iter().filter_map(|entry| {
        let [id, fields] = list(entry) else {
            return None;
        };
        let id = String::from_utf8(bytes(id)?.to_vec()).ok()?;
        let (mut instance, mut blob) = (None, Vec::new());
        for pair in list(fields).chunks(2) {
            match (pair.first().and_then(bytes), pair.get(1).and_then(bytes)) {
                (Some(b"i"), Some(v)) => {
                    instance = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok())
                }
                (Some(b"d"), Some(v)) => blob = v.to_vec(),
                _ => {}
            }
        }
        Some((id, instance, blob))
    })
}

/// HGETALL's reply as (field, integer value) pairs.
fn pairs(v: &Value) -> Vec<(Vec<u8>, Option<u64>)> {
    let number = |v: &Value| match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => bytes(other)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.parse().ok()),
    };
    match v {
        Value::Map(map) => map
            .iter()
            .filter_map(|(k, v)| Some((bytes(k)?.to_vec(), number(v))))
            .collect(),
        other => list(other)
            .chunks(2)
            .filter_map(|p| Some((bytes(p.first()?)?.to_vec(), number(p.get(1)?))))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    #[test]
    fn stream_replies_are_read_and_odd_shapes_skipped() {
        let entry = Value::Array(vec![
            bulk(b"1700000000000-3"),
            Value::Array(vec![bulk(b"i"), bulk(b"42"), bulk(b"d"), bulk(b"xyz")]),
        ]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"shoal:changes"),
            Value::Array(vec![entry, Value::Int(5), Value::Nil]),
        ])]);
        let got: Vec<_> = entries(&stream_of(reply)).collect();
        assert_eq!(
            got,
            [("1700000000000-3".to_string(), Some(42), b"xyz".to_vec())]
        );
        assert_eq!(entries(&stream_of(Value::Nil)).count(), 0);
        assert!(id_key("5-1") < id_key("5-2") && id_key("5-9") < id_key("10-0"));
        let counts = Value::Array(vec![bulk(&[1; 20]), bulk(b"7"), bulk(b"odd")]);
        assert_eq!(pairs(&counts), [(vec![1; 20], Some(7))]);
    }
}
