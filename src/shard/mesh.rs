//! The persistent cross-shard channels: a full mesh built once at start,
//! one channel per ordered pair of shards for forwarded requests and one
//! for replies. Shard `i`'s links are indexed by the other shard's id.
//! Messages are batches: one per peer per event-loop turn.

use crate::request::{Announce, Client, InfoHash};
use crate::swarm::Counts;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use std::net::SocketAddr;

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
}

pub enum Reply {
    ScrapeCounts { id: u32, counts: Vec<(u16, Counts)> },
    HttpBody { id: u32, body: Vec<u8> },
}

/// What the owner needs to answer an HTTP announce.
pub struct HttpAnnounceJob {
    pub announce: Announce,
    pub client: Client,
    pub compact: bool,
    pub no_peer_id: bool,
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
