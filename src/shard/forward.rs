//! The receiving side of the cross-shard mesh: answering requests other
//! shards forwarded here, filing the replies to ours, and the flusher that
//! sends what this shard queued.

use super::answer::write_udp_scrape;
use super::mesh::{Forward, ForwardBatch, HttpReply, Reply, ReplyBatch, ScrapeReplyTo};
use super::Shard;
use crate::bittorrent::Protocol;
use crate::metrics::counters::{Action, Outcome};
use crate::net::mmsg::SendBatch;
use crate::tracker::{AfterAnnounce, ScrapeRequest};
use glommio::channels::shared_channel::ConnectedReceiver;
use std::rc::Rc;
use std::time::Duration;

/// Answers what other shards forwarded: UDP announces (sent from this
/// shard's own socket), HTTP announces (encoded and sent back) and scrape
/// parts (counts sent back). Sends replies only, never forwards.
pub(super) async fn serve_forwarded(shard: Rc<Shard>, rx: ConnectedReceiver<ForwardBatch>) {
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
pub(super) async fn serve_replies(shard: Rc<Shard>, rx: ConnectedReceiver<ReplyBatch>) {
    while let Some(batch) = rx.recv().await {
        shard.file_replies(batch);
        glommio::yield_if_needed().await;
    }
}

/// Sends what the shard's tasks queued for other shards: after a
/// notification, once the other ready tasks had their turn (so requests
/// from many connections share one batch), and again shortly while a
/// saturated peer's channel is full.
pub(super) async fn flusher(shard: Rc<Shard>) {
    loop {
        shard.mesh.flush_notify.notified().await;
        futures_lite::future::yield_now().await;
        if shard.try_flush() {
            // A channel was full: let the peer drain it before retrying.
            glommio::timer::sleep(RETRY_FULL_CHANNEL).await;
        }
    }
}

/// How long the flusher waits before retrying a full channel.
const RETRY_FULL_CHANNEL: Duration = Duration::from_micros(200);

impl Shard {
    fn answer_forwarded(&self, batch: ForwardBatch, after: &mut Vec<AfterAnnounce>) {
        let clock = self.clock();
        // Shared by the shard's mesh tasks; borrowed only within this call.
        let mut outgoing = self.udp.mesh_send.borrow_mut();
        for message in batch {
            match message {
                Forward::UdpAnnounce {
                    endpoint,
                    from,
                    transaction_id,
                    received,
                    mut announce,
                } => {
                    let endpoint = endpoint as usize;
                    let out = &mut outgoing[endpoint];
                    if out.is_full() {
                        self.flush_udp(endpoint, out);
                    }
                    let len = self.answer_udp_announce(
                        from,
                        transaction_id,
                        &mut announce,
                        clock.mono,
                        received,
                        out.slot(),
                        after,
                    );
                    out.push(len, from);
                }
                Forward::HttpAnnounce {
                    origin,
                    id,
                    mut job,
                } => {
                    let mut body = Vec::with_capacity(256);
                    self.answer_http_announce(&mut job, clock.mono, &mut body, after);
                    self.mesh
                        .reply(origin as usize, Reply::HttpBody { id, body });
                }
                Forward::ScrapeQuery { origin, id, hashes } => {
                    let tracker = self.tracker.borrow();
                    let counts = hashes
                        .iter()
                        .map(|(position, hash)| (*position, tracker.scrape(hash)))
                        .collect();
                    self.mesh
                        .reply(origin as usize, Reply::ScrapeCounts { id, counts });
                }
                Forward::FullScrapeSlice { origin, id, cursor } => {
                    let slice = self.scrape_slice(cursor);
                    self.mesh
                        .reply(origin as usize, Reply::FullScrapeSlice { id, slice });
                }
            }
        }
        self.flush_udp_all(&mut outgoing);
    }

    fn file_replies(&self, batch: ReplyBatch) {
        let mut outgoing = self.udp.mesh_send.borrow_mut();
        for reply in batch {
            match reply {
                Reply::HttpBody { id, body } => {
                    self.mesh.http_waiters.complete(id, HttpReply::Body(body))
                }
                Reply::FullScrapeSlice { id, slice } => {
                    self.mesh.http_waiters.complete(id, HttpReply::Slice(slice))
                }
                Reply::ScrapeCounts { id, counts } => {
                    let Some(done) = self.mesh.scrapes.borrow_mut().fill(id, &counts) else {
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
                            let len = write_udp_scrape(out.slot(), transaction_id, &done.counts);
                            out.push(len, to);
                            if let Some((hashes, client)) = &done.for_hooks {
                                self.tracker.borrow_mut().after_scrape(
                                    &ScrapeRequest {
                                        protocol: Protocol::Udp,
                                        client: *client,
                                        info_hashes: hashes,
                                        passkey: None,
                                    },
                                    &done.counts,
                                );
                            }
                        }
                        ScrapeReplyTo::Http { waiter } => self
                            .mesh
                            .http_waiters
                            .complete(waiter, HttpReply::Scrape(done.counts)),
                    }
                }
            }
        }
        self.flush_udp_all(&mut outgoing);
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
