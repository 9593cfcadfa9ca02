//! The persistent cross-shard channels: a full mesh built once at start,
//! one channel per ordered pair of shards for forwarded requests and one
//! for replies. Shard `i`'s links are indexed by the other shard's id.
//! Messages are batches: one per peer per event-loop turn. Also here:
//! the shard's outboxes and the scrapes waiting for other shards.

use super::wait::{Notify, Waiters};
use crate::bittorrent::{Announce, Client, Counts, InfoHash};
use crate::tracker::Origin;
use ahash::HashMap;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Work one shard hands to the shard owning the infohash.
pub enum Forward {
    /// A UDP announce that reached the wrong shard. The owner answers it
    /// itself, from its own socket of the same group (same local address).
    UdpAnnounce {
        endpoint: u16,
        from: SocketAddr,
        transaction_id: u32,
        /// When the origin read it: request latency.
        received: std::time::Instant,
        announce: Box<Announce>,
    },
    /// An HTTP announce: the connection stays on the origin shard, so the
    /// owner answers with the encoded body.
    HttpAnnounce {
        origin: u16,
        id: u32,
        job: Box<HttpAnnounceJob>,
    },
    /// The owner's part of a scrape: counts for these (position, hash).
    ScrapeQuery {
        origin: u16,
        id: u32,
        hashes: Vec<(u16, InfoHash)>,
    },
    /// A slice of a full scrape: the counts of the owner's torrents from
    /// `cursor` on (see `shard::full_scrape`).
    FullScrapeSlice { origin: u16, id: u32, cursor: usize },
}

pub enum Reply {
    ScrapeCounts { id: u32, counts: Vec<(u16, Counts)> },
    HttpBody { id: u32, body: Vec<u8> },
    FullScrapeSlice { id: u32, slice: ScrapeSlice },
}

/// One slice of a shard's torrents for a full scrape, and where the next
/// one starts (`None`: that was the last).
pub struct ScrapeSlice {
    pub files: Vec<(InfoHash, Counts)>,
    pub next: Option<usize>,
}

/// What the owner needs to answer an HTTP announce.
pub struct HttpAnnounceJob {
    pub origin: Origin,
    pub announce: Announce,
    pub compact: bool,
    pub no_peer_id: bool,
}

/// A reply from another shard to an HTTP request this shard forwarded.
pub(crate) enum HttpReply {
    Body(Vec<u8>),
    Scrape(Vec<Counts>),
    Slice(ScrapeSlice),
}

/// Where a gathered scrape's answer goes.
pub(crate) enum ScrapeReplyTo {
    Udp {
        endpoint: usize,
        to: SocketAddr,
        transaction_id: u32,
        received: std::time::Instant,
    },
    Http {
        waiter: u32,
    },
}

pub(crate) struct PendingScrape {
    pub reply_to: ScrapeReplyTo,
    pub counts: Vec<Counts>,
    /// The scrape's infohashes and sender, kept only for post-hooks.
    pub for_hooks: Option<(Vec<InfoHash>, Client)>,
    /// Owners that have not replied yet.
    pub waiting: usize,
}

/// Scrapes waiting for other shards' counts, by request id.
#[derive(Default)]
pub(crate) struct PendingScrapes {
    next_id: u32,
    waiting: HashMap<u32, PendingScrape>,
}

impl PendingScrapes {
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn start(&mut self, scrape: PendingScrape) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.waiting.insert(id, scrape);
        id
    }

    /// Files one owner's counts; returns the scrape once all are in.
    pub fn fill(&mut self, id: u32, counts: &[(u16, Counts)]) -> Option<PendingScrape> {
        let pending = self.waiting.get_mut(&id)?;
        for &(position, c) in counts {
            if let Some(slot) = pending.counts.get_mut(position as usize) {
                *slot = c;
            }
        }
        pending.waiting -= 1;
        if pending.waiting == 0 {
            self.waiting.remove(&id)
        } else {
            None
        }
    }
}

/// UDP forwards queued for one saturated shard before new ones are dropped.
const MAX_QUEUED_UDP_FORWARDS: usize = 65_536;
/// Cross-shard scrape gathers in flight before new UDP ones are dropped.
const MAX_PENDING_GATHERS: usize = 65_536;

/// One shard's side of the mesh: its connected senders, what it queued
/// for each peer this turn, and what it waits for.
pub(crate) struct Mesh {
    forward_to: Vec<Option<ConnectedSender<ForwardBatch>>>,
    reply_to: Vec<Option<ConnectedSender<ReplyBatch>>>,
    /// Requests for other shards gathered during this turn, by shard.
    forward_outbox: RefCell<Vec<ForwardBatch>>,
    reply_outbox: RefCell<Vec<ReplyBatch>>,
    pub scrapes: RefCell<PendingScrapes>,
    /// HTTP connections waiting for an owner's reply.
    pub http_waiters: Waiters<HttpReply>,
    /// Wakes the flusher that sends what is queued.
    pub flush_notify: Notify,
}

impl Mesh {
    pub fn new(
        forward_to: Vec<Option<ConnectedSender<ForwardBatch>>>,
        reply_to: Vec<Option<ConnectedSender<ReplyBatch>>>,
    ) -> Self {
        let shards = forward_to.len();
        Self {
            forward_to,
            reply_to,
            forward_outbox: RefCell::new((0..shards).map(|_| Vec::new()).collect()),
            reply_outbox: RefCell::new((0..shards).map(|_| Vec::new()).collect()),
            scrapes: Default::default(),
            http_waiters: Default::default(),
            flush_notify: Default::default(),
        }
    }

    pub fn forward(&self, owner: usize, message: Forward) {
        self.forward_outbox.borrow_mut()[owner].push(message);
    }

    pub fn reply(&self, origin: usize, message: Reply) {
        self.reply_outbox.borrow_mut()[origin].push(message);
    }

    // No task ever waits for room on a cross-shard channel: everything is
    // sent with `try_send`, and a batch that does not fit stays queued for
    // the flusher, which retries shortly. So shards can never wait on each
    // other in a cycle, whatever the load (a reviewer reproduced such a
    // cycle when tasks awaited room on full channels).

    /// Sends every queued batch that fits now; wakes the flusher to retry
    /// the rest. Returns whether anything was left. A closed channel (a
    /// peer shard is gone) sets `shutdown`.
    pub fn try_flush(&self, shutdown: &AtomicBool) -> bool {
        let forwards = try_send_all(&self.forward_to, &self.forward_outbox, shutdown);
        let replies = try_send_all(&self.reply_to, &self.reply_outbox, shutdown);
        let left_over = forwards || replies;
        if left_over {
            self.flush_notify.notify();
        }
        left_over
    }

    /// Whether a UDP scrape may fan out to these owners now (their queues
    /// are not saturated, and not too many gathers are waiting).
    pub fn may_start_udp_gather(&self, owners: impl Iterator<Item = usize>) -> bool {
        self.scrapes.borrow().len() < MAX_PENDING_GATHERS
            && owners.into_iter().all(|o| self.may_queue_udp_forward(o))
    }

    /// Whether a UDP forward to `owner` may still be queued: the queue to
    /// a saturated shard is capped (UDP clients retry a lost announce).
    pub fn may_queue_udp_forward(&self, owner: usize) -> bool {
        self.forward_outbox.borrow()[owner].len() < MAX_QUEUED_UDP_FORWARDS
    }
}

/// `try_send`s each non-empty outbox; what does not fit is put back
/// (ahead of anything queued since). Returns whether anything is left.
fn try_send_all<T: Send + 'static>(
    senders: &[Option<ConnectedSender<Vec<T>>>],
    outboxes: &RefCell<Vec<Vec<T>>>,
    shutdown: &AtomicBool,
) -> bool {
    use glommio::{GlommioError, ResourceType};
    let mut left_over = false;
    for (peer, tx) in senders.iter().enumerate() {
        let Some(tx) = tx else { continue };
        let batch = std::mem::take(&mut outboxes.borrow_mut()[peer]);
        if batch.is_empty() {
            continue;
        }
        match tx.try_send(batch) {
            Ok(()) => {}
            Err(GlommioError::WouldBlock(ResourceType::Channel(mut batch))) => {
                let mut outboxes = outboxes.borrow_mut();
                batch.append(&mut outboxes[peer]);
                outboxes[peer] = batch;
                left_over = true;
            }
            // Closed: the peer shard is gone, the process is stopping.
            Err(_) => shutdown.store(true, Ordering::Relaxed),
        }
    }
    left_over
}

pub type ForwardBatch = Vec<Forward>;
pub type ReplyBatch = Vec<Reply>;

/// One shard's unconnected ends, movable to its executor thread.
pub struct Links {
    forward_to: Vec<Option<SharedSender<ForwardBatch>>>,
    forward_from: Vec<Option<SharedReceiver<ForwardBatch>>>,
    reply_to: Vec<Option<SharedSender<ReplyBatch>>>,
    reply_from: Vec<Option<SharedReceiver<ReplyBatch>>>,
}

/// The same ends, connected on the executor.
pub struct Connected {
    pub forward_to: Vec<Option<ConnectedSender<ForwardBatch>>>,
    pub forward_from: Vec<ConnectedReceiver<ForwardBatch>>,
    pub reply_to: Vec<Option<ConnectedSender<ReplyBatch>>>,
    pub reply_from: Vec<ConnectedReceiver<ReplyBatch>>,
}

/// Every shard's links, in shard order.
pub fn full_mesh(shards: usize, capacity: usize) -> Vec<Links> {
    let mut links: Vec<Links> = (0..shards)
        .map(|_| Links {
            forward_to: (0..shards).map(|_| None).collect(),
            forward_from: (0..shards).map(|_| None).collect(),
            reply_to: (0..shards).map(|_| None).collect(),
            reply_from: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from == to {
                continue;
            }
            let (tx, rx) = shared_channel::new_bounded(capacity);
            links[from].forward_to[to] = Some(tx);
            links[to].forward_from[from] = Some(rx);
            let (tx, rx) = shared_channel::new_bounded(capacity);
            links[from].reply_to[to] = Some(tx);
            links[to].reply_from[from] = Some(rx);
        }
    }
    links
}

type Pending<T> = glommio::task::JoinHandle<T>;

fn connect_senders<T: Send + 'static>(
    ends: Vec<Option<SharedSender<T>>>,
) -> Vec<Option<Pending<ConnectedSender<T>>>> {
    ends.into_iter()
        .map(|end| end.map(|tx| glommio::spawn_local(tx.connect()).detach()))
        .collect()
}

fn connect_receivers<T: Send + 'static>(
    ends: Vec<Option<SharedReceiver<T>>>,
) -> Vec<Pending<ConnectedReceiver<T>>> {
    ends.into_iter()
        .flatten()
        .map(|rx| glommio::spawn_local(rx.connect()).detach())
        .collect()
}

async fn finish_senders<T: Send + 'static>(
    pending: Vec<Option<Pending<ConnectedSender<T>>>>,
) -> Vec<Option<ConnectedSender<T>>> {
    let mut done = Vec::with_capacity(pending.len());
    for task in pending {
        done.push(match task {
            Some(t) => t.await,
            None => None,
        });
    }
    done
}

async fn finish_receivers<T: Send + 'static>(
    pending: Vec<Pending<ConnectedReceiver<T>>>,
) -> Vec<ConnectedReceiver<T>> {
    let mut done = Vec::with_capacity(pending.len());
    for task in pending {
        done.extend(task.await);
    }
    done
}

impl Links {
    /// Connects every end. Each connect waits for the other shard to
    /// connect its end, so all of them must be under way at once.
    pub async fn connect(self) -> Connected {
        let forward_to = connect_senders(self.forward_to);
        let reply_to = connect_senders(self.reply_to);
        let forward_from = connect_receivers(self.forward_from);
        let reply_from = connect_receivers(self.reply_from);
        Connected {
            forward_to: finish_senders(forward_to).await,
            reply_to: finish_senders(reply_to).await,
            forward_from: finish_receivers(forward_from).await,
            reply_from: finish_receivers(reply_from).await,
        }
    }
}
