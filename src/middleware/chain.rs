//! One shard's hooks, in their configured order, each marked with the
//! stages it runs in: `hooks.pre` entries run before the answer,
//! `hooks.post` entries after it, an operator's linked hooks in both.

use super::hook::{AnnounceContext, Hook, Refusal, RequestContext, ScrapeContext};
use crate::bittorrent::{Announce, Client, Counts};

/// Where in the request path a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Before the answer (`before_*`): may refuse or change it.
    Pre,
    /// After the answer left (`after_*`).
    Post,
    /// Both: the operator's own hooks linked with `Server::with_hooks`.
    Both,
}

impl Stage {
    fn pre(self) -> bool {
        matches!(self, Stage::Pre | Stage::Both)
    }
    fn post(self) -> bool {
        matches!(self, Stage::Post | Stage::Both)
    }
}

/// A hook in a chain, with the options it was built from (for reloads).
pub struct Link {
    pub hook: Box<dyn Hook>,
    pub stage: Stage,
    pub options: serde_yaml::Value,
}

/// The hooks of one shard, in order.
#[derive(Default)]
pub struct Chain {
    links: Vec<Link>,
    /// Whether any hook runs before answers: when none does, the request
    /// path builds no context for them.
    pre: bool,
    requests: bool,
    params: bool,
    after_announce: bool,
    after_scrape: bool,
}

impl Chain {
    pub fn new(links: Vec<Link>) -> Self {
        let after_announce = links
            .iter()
            .any(|l| l.stage.post() && l.hook.wants_after_announce());
        let after_scrape = links
            .iter()
            .any(|l| l.stage.post() && l.hook.wants_after_scrape());
        let pre = links.iter().any(|l| l.stage.pre());
        let requests = links
            .iter()
            .any(|l| l.stage.pre() && l.hook.checks_requests());
        let params = links.iter().any(|l| l.stage.pre() && l.hook.wants_params());
        Self {
            links,
            pre,
            requests,
            params,
            after_announce,
            after_scrape,
        }
    }

    /// Whether any hook runs before the answer.
    #[inline]
    pub fn has_pre_hooks(&self) -> bool {
        self.pre
    }

    /// Whether any pre-hook checks requests as they arrive.
    #[inline]
    pub fn checks_requests(&self) -> bool {
        self.requests
    }

    /// Whether any pre-hook reads non-standard announce parameters.
    #[inline]
    pub fn wants_params(&self) -> bool {
        self.params
    }

    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The hooks' names in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.links.iter().map(|l| l.hook.name())
    }

    pub fn start(&mut self, shard: usize) {
        for l in &mut self.links {
            l.hook.start(shard);
        }
    }

    pub fn stop(&mut self) {
        for l in &mut self.links {
            l.hook.stop();
        }
    }

    /// Takes a new configuration's chain (built for this shard, not
    /// started): a hook at the same place, with the same name and stage,
    /// that accepts the new options keeps its state; any other is stopped
    /// and replaced.
    pub fn reload(&mut self, fresh: Chain, shard: usize) {
        let mut old: Vec<Option<Link>> = std::mem::take(&mut self.links)
            .into_iter()
            .map(Some)
            .collect();
        let mut links = Vec::with_capacity(fresh.links.len());
        for (i, mut new) in fresh.links.into_iter().enumerate() {
            let kept = old.get_mut(i).and_then(|slot| {
                let same = slot
                    .as_ref()
                    .is_some_and(|o| o.hook.name() == new.hook.name() && o.stage == new.stage);
                if same {
                    slot.take()
                } else {
                    None
                }
            });
            match kept {
                Some(mut link) => {
                    if link.hook.reload(&new.options) {
                        link.options = new.options;
                        links.push(link);
                    } else {
                        link.hook.stop();
                        new.hook.start(shard);
                        links.push(new);
                    }
                }
                None => {
                    new.hook.start(shard);
                    links.push(new);
                }
            }
        }
        for mut link in old.into_iter().flatten() {
            link.hook.stop();
        }
        *self = Chain::new(links);
    }

    pub fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        self.links
            .iter_mut()
            .filter(|l| l.stage.pre())
            .try_for_each(|l| l.hook.before_announce(ctx))
    }

    pub fn before_request(&mut self, ctx: &RequestContext) -> Result<(), Refusal> {
        self.links
            .iter_mut()
            .filter(|l| l.stage.pre() && l.hook.checks_requests())
            .try_for_each(|l| l.hook.before_request(ctx))
    }

    pub fn before_scrape(&mut self, ctx: &ScrapeContext) -> Result<(), Refusal> {
        self.links
            .iter_mut()
            .filter(|l| l.stage.pre())
            .try_for_each(|l| l.hook.before_scrape(ctx))
    }

    /// Whether any post-hook wants announces: when none does, the request
    /// path keeps no copy of them.
    #[inline]
    pub fn wants_after_announce(&self) -> bool {
        self.after_announce
    }

    pub fn after_announce(&mut self, announce: &Announce, client: Client, counts: Counts) {
        for l in self.links.iter_mut().filter(|l| l.stage.post()) {
            l.hook.after_announce(announce, client, counts);
        }
    }

    #[inline]
    pub fn wants_after_scrape(&self) -> bool {
        self.after_scrape
    }

    pub fn after_scrape(&mut self, ctx: &ScrapeContext, counts: &[Counts]) {
        for l in self.links.iter_mut().filter(|l| l.stage.post()) {
            if l.hook.wants_after_scrape() {
                l.hook.after_scrape(ctx, counts);
            }
        }
    }
}
