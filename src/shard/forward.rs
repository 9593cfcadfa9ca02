//! The receiving side of the cross-shard mesh: answering requests other
//! shards forwarded here, and gathering the replies to ours.

use super::http::HttpReply;
use super::mesh::{Forward, ForwardBatch, Reply, ReplyBatch};
use super::udp::{write_scrape, AfterAnnounce};
use super::Shard;
use crate::metrics::counters::{Action, Outcome};
use crate::net::mmsg::SendBatch;
use crate::request::InfoHash;
use crate::swarm::Counts;
use ahash::HashMap;
use glommio::channels::shared_channel::ConnectedReceiver;
use std::net::SocketAddr;
use std::rc::Rc;

/// Answers what other shards forwarded: UDP announces (sent from this
/// shard's own socket), HTTP announces (encoded and sent back) and scrape
/// parts (counts sent back). Sends replies only, never forwards.
pub(crate) async fn serve_forwarded(shard: Rc<Shard>, rx: ConnectedReceiver<ForwardBatch>) {
    let mut after: Vec<AfterAnnounce> = Vec::new();
    while let Some(batch) = rx.recv().await {
        shard.answer_forwarded(batch, &mut after);
        shard.run_after_hooks(&mut after);
        let _ = shard.try_flush();
        glommio::yield_if_needed().await;
    }
}

/// Files the owners' replies: HTTP bodies go to their waiting connection,
/// scrape counts to their gather, answered once complete. Sends nothing
/// to other shards.
pub(crate) async fn serve_replies(shard: Rc<Shard>, rx: ConnectedReceiver<ReplyBatch>) {
    while let Some(batch) = rx.recv().await {
        shard.file_replies(batch);
        glommio::yield_if_needed().await;
    }
}

impl Shard {
    fn answer_forwarded(&self, batch: ForwardBatch, after: &mut Vec<AfterAnnounce>) {
        let clock = self.clock();
        // Shared by the shard's mesh tasks; borrowed only within this call.
        let mut outgoing = self.mesh_send.borrow_mut();
        for message in batch {
            match message {
                Forward::UdpAnnounce {
                    endpoint,
                    from,
                    transaction_id,
                    received,
                    announce,
                } => {
                    let endpoint = endpoint as usize;
                    let out = &mut outgoing[endpoint];
                    if out.is_full() {
                        self.flush_udp(endpoint, out);
                    }
                    let len = self.announce(
                        from,
                        transaction_id,
                        *announce,
                        clock,
                        received,
                        out.slot(),
                        after,
                    );
                    out.push(len, from);
                }
                Forward::HttpAnnounce { origin, id, job } => {
                    let mut body = Vec::with_capacity(256);
                    after.extend(self.http_announce_here(*job, clock, &mut body));
                    self.reply(origin as usize, Reply::HttpBody { id, body });
                }
                Forward::ScrapeQuery { origin, id, hashes } => {
                    let swarms = self.swarms.borrow();
                    let counts = hashes
                        .iter()
                        .map(|(position, hash)| (*position, swarms.counts(hash)))
                        .collect();
                    self.reply(origin as usize, Reply::ScrapeCounts { id, counts });
                }
            }
        }
        self.flush_udp_all(&mut outgoing);
    }

    fn file_replies(&self, batch: ReplyBatch) {
        let mut outgoing = self.mesh_send.borrow_mut();
        for reply in batch {
            match reply {
                Reply::HttpBody { id, body } => {
                    self.http_waiters.complete(id, HttpReply::Body(body))
                }
                Reply::ScrapeCounts { id, counts } => {
                    let Some(done) = self.scrapes.borrow_mut().fill(id, &counts) else {
                        continue;
                    };
                    match done.reply_to {
                        ScrapeReplyTo::Udp {
                            endpoint,
                            to,
                            transaction_id,
                            received,
                        } => {
                            let out = &mut outgoing[endpoint];
                            if out.is_full() {
                                self.flush_udp(endpoint, out);
                            }
                            self.udp_answered(Action::Scrape, to, Outcome::Ok, received);
                            let len = write_scrape(out.slot(), transaction_id, &done.counts);
                            out.push(len, to);
                        }
                        ScrapeReplyTo::Http { waiter } => self
                            .http_waiters
                            .complete(waiter, HttpReply::Scrape(done.counts)),
                    }
                }
            }
        }
        self.flush_udp_all(&mut outgoing);
    }
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
    reply_to: ScrapeReplyTo,
    counts: Vec<Counts>,
    /// Owners that have not replied yet.
    waiting: usize,
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

    fn start(&mut self, scrape: PendingScrape) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.waiting.insert(id, scrape);
        id
    }

    /// Files one owner's counts; returns the scrape once all are in.
    fn fill(&mut self, id: u32, counts: &[(u16, Counts)]) -> Option<PendingScrape> {
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

impl Shard {
    /// Counts for `hashes`, in order: at once when this shard owns them
    /// all, else `None` and the owners are asked; the answer then goes to
    /// `reply_to` when the last of them replied.
    pub(crate) fn gather_scrape(
        &self,
        hashes: &[InfoHash],
        reply_to: impl FnOnce() -> ScrapeReplyTo,
    ) -> Option<Vec<Counts>> {
        let owner = &self.common.owner;
        let swarms = self.swarms.borrow();
        let mut counts: Vec<Counts> = Vec::with_capacity(hashes.len());
        let mut queries: Vec<Vec<(u16, InfoHash)>> = Vec::new();
        for (position, hash) in hashes.iter().enumerate() {
            match owner.of(hash) {
                o if o == self.id => counts.push(swarms.counts(hash)),
                o => {
                    counts.push(Counts::default());
                    if queries.is_empty() {
                        queries.resize_with(owner.shards(), Vec::new);
                    }
                    queries[o].push((position as u16, *hash));
                }
            }
        }
        drop(swarms);
        if queries.is_empty() {
            return Some(counts);
        }
        let waiting = queries.iter().filter(|q| !q.is_empty()).count();
        // Evaluated before borrowing `scrapes`: the caller's closure may
        // touch shard state.
        let reply_to = reply_to();
        let id = self.scrapes.borrow_mut().start(PendingScrape {
            reply_to,
            counts,
            waiting,
        });
        for (o, hashes) in queries.into_iter().enumerate() {
            if !hashes.is_empty() {
                self.forward(
                    o,
                    Forward::ScrapeQuery {
                        origin: self.id as u16,
                        id,
                        hashes,
                    },
                );
            }
        }
        None
    }

    /// Sends whatever the mesh tasks queued on each socket.
    fn flush_udp_all(&self, batches: &mut [SendBatch]) {
        for (endpoint, out) in batches.iter_mut().enumerate() {
            if !out.is_empty() {
                self.flush_udp(endpoint, out);
            }
        }
        self.settle_latency();
    }
}
