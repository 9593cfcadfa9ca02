//! Scrapes that name infohashes of several shards: the local counts at
//! once, the rest asked of their owners and filled in as they reply.

use super::mesh::{Forward, PendingScrape, ScrapeReplyTo};
use super::Shard;
use crate::bittorrent::{Client, Counts, InfoHash};

impl Shard {
    /// Counts for `hashes`, in order: at once when this shard owns them
    /// all, else `None` and the owners are asked; the answer then goes to
    /// `reply_to` when the last of them replied. With `hooked_client`, the
    /// post-hooks run on that answer (the caller runs them on one at once).
    pub(super) fn gather_scrape(
        &self,
        hashes: &[InfoHash],
        hooked_client: Option<Client>,
        reply_to: impl FnOnce() -> ScrapeReplyTo,
    ) -> Option<Vec<Counts>> {
        let owner = &self.common.owner;
        let tracker = self.tracker.borrow();
        let mut counts: Vec<Counts> = Vec::with_capacity(hashes.len());
        let mut queries: Vec<Vec<(u16, InfoHash)>> = Vec::new();
        for (position, hash) in hashes.iter().enumerate() {
            match owner.of(hash) {
                o if o == self.id => counts.push(tracker.scrape(hash)),
                o => {
                    counts.push(Counts::default());
                    if queries.is_empty() {
                        queries.resize_with(owner.shards(), Vec::new);
                    }
                    queries[o].push((position as u16, *hash));
                }
            }
        }
        drop(tracker);
        if queries.is_empty() {
            return Some(counts);
        }
        let waiting = queries.iter().filter(|q| !q.is_empty()).count();
        let for_hooks = hooked_client
            .filter(|_| self.tracker.borrow().wants_after_scrape())
            .map(|client| (hashes.to_vec(), client));
        // Evaluated before borrowing `scrapes`: the caller's closure may
        // touch shard state.
        let reply_to = reply_to();
        let id = self.mesh.scrapes.borrow_mut().start(PendingScrape {
            reply_to,
            counts,
            for_hooks,
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
}
