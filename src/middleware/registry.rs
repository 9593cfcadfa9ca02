//! From config names to hooks: the registry checks `hooks.pre` and
//! `hooks.post` once, at start, and gives back what builds each shard's
//! chain. An operator's binary can register its own names beside the
//! built-in ones, or link hooks directly (`Server::with_hooks`).

use super::chain::{Chain, Link, Stage};
use super::hook::Hook;
use super::interval_variation::{self, IntervalVariation};
use super::jwk_set::Fetcher;
use super::jwt::{self, Jwt};
pub use super::options::{parse_options, Maker};
use super::{client_approval, ip_ban, rate_limit, torrent_approval};
use crate::config::{HookConfig, HooksConfig};
use std::sync::Arc;

/// Builds the hooks of shard `n`; called once on each shard's own thread.
pub type HookFactory = Arc<dyn Fn(usize) -> Vec<Box<dyn Hook>> + Send + Sync>;

pub fn no_hooks() -> HookFactory {
    Arc::new(|_| Vec::new())
}

/// Checks a hook's options and returns its maker, or what is wrong (the
/// registry adds the key).
pub type Builder = fn(&serde_yaml::Value) -> Result<Maker, String>;

/// The hooks that can be named in the config.
#[derive(Clone)]
pub struct Registry {
    builders: Vec<(&'static str, Builder)>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// Shoal's built-in hooks.
    pub fn builtin() -> Self {
        Self {
            builders: vec![
                (interval_variation::NAME, build_interval_variation),
                (client_approval::NAME, client_approval::build),
                (torrent_approval::NAME, torrent_approval::build),
                (jwt::NAME, build_jwt),
                (ip_ban::NAME, ip_ban::build),
                (rate_limit::NAME, rate_limit::build),
            ],
        }
    }

    /// Adds (or replaces) a named hook.
    pub fn register(&mut self, name: &'static str, builder: Builder) {
        self.builders.retain(|(n, _)| *n != name);
        self.builders.push((name, builder));
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.builders.iter().map(|(n, _)| *n)
    }

    /// Checks both chains; every error names its key, e.g.
    /// `hooks.pre[1]: unknown hook "xyz"`.
    pub fn build(&self, hooks: &HooksConfig) -> Result<ConfiguredHooks, String> {
        let mut entries = Vec::new();
        for (key, list, stage) in [
            ("hooks.pre", &hooks.pre, Stage::Pre),
            ("hooks.post", &hooks.post, Stage::Post),
        ] {
            for (i, entry) in list.iter().enumerate() {
                let maker = self
                    .build_one(entry)
                    .map_err(|e| format!("{key}[{i}]{e}"))?;
                entries.push((maker, stage, entry.options.clone()));
            }
        }
        Ok(ConfiguredHooks { entries })
    }

    fn build_one(&self, entry: &HookConfig) -> Result<Maker, String> {
        let Some((_, builder)) = self.builders.iter().find(|(n, _)| *n == entry.name) else {
            let known: Vec<_> = self.names().collect();
            return Err(format!(
                ": unknown hook {:?} (known: {})",
                entry.name,
                known.join(", ")
            ));
        };
        builder(&entry.options).map_err(|e| format!(".options.{e}"))
    }
}

/// The configured chains, checked: each shard builds its own from them.
#[derive(Clone, Default)]
pub struct ConfiguredHooks {
    entries: Vec<(Maker, Stage, serde_yaml::Value)>,
}

impl ConfiguredHooks {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Shard `shard`'s chain: the configured hooks in order (pre, then
    /// post), then the operator's linked ones (both stages). Not started.
    pub fn chain(&self, shard: usize, linked: &HookFactory) -> Chain {
        let configured = self.entries.iter().map(|(make, stage, options)| Link {
            hook: make(shard),
            stage: *stage,
            options: options.clone(),
        });
        let linked = linked(shard).into_iter().map(|hook| Link {
            hook,
            stage: Stage::Both,
            options: serde_yaml::Value::Null,
        });
        Chain::new(configured.chain(linked).collect())
    }
}

fn build_interval_variation(options: &serde_yaml::Value) -> Result<Maker, String> {
    let options: interval_variation::Options = parse_options(options)?;
    options.check()?;
    Ok(Arc::new(move |_| {
        Box::new(IntervalVariation::new(options.clone())) as Box<dyn Hook>
    }))
}

/// Fetches the JWK Set once (a failure refuses the configuration, naming
/// `jwk_set_url`) and starts its refresh thread; each shard's instance
/// subscribes to it.
fn build_jwt(options: &serde_yaml::Value) -> Result<Maker, String> {
    let options: jwt::Options = parse_options(options)?;
    options.check()?;
    let fetcher = Fetcher::start(options.jwk_set_url.clone(), options.jwk_set_update_interval)
        .map_err(|e| format!("jwk_set_url: {e}"))?;
    Ok(Arc::new(move |_| {
        Box::new(Jwt::new(&options, fetcher.subscribe())) as Box<dyn Hook>
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hooks(yaml: &str) -> HooksConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn error(yaml: &str) -> String {
        Registry::builtin().build(&hooks(yaml)).err().unwrap()
    }

    #[test]
    fn unknown_names_and_bad_options_name_the_key() {
        let e = error("pre: [{name: interval variation, options: {modify_response_probability: 0.5, max_increase_delta: 9}}, {name: xyz}]");
        assert!(e.starts_with("hooks.pre[1]: unknown hook \"xyz\""), "{e}");
        assert!(e.contains("interval variation"), "{e}");
        let e = error("post: [{name: interval variation, options: {modify_response_probability: 2, max_increase_delta: 9}}]");
        assert!(
            e.starts_with("hooks.post[0].options.modify_response_probability:"),
            "{e}"
        );
        let e = error("pre: [{name: interval variation, options: {max_increase_delta: 9}}]");
        assert!(e.starts_with("hooks.pre[0].options."), "{e}");
        assert!(e.contains("modify_response_probability"), "{e}");
        let e = error("pre: [{name: interval variation, options: {modify_response_probability: 1, max_increase_delta: 9, typo: 1}}]");
        assert!(e.contains("typo"), "{e}");
    }

    #[test]
    fn chains_put_configured_hooks_first_in_their_stages() {
        let configured = Registry::builtin()
            .build(&hooks(
                "pre: [{name: interval variation, options: {modify_response_probability: 1, max_increase_delta: 5}}]",
            ))
            .unwrap();
        struct Linked;
        impl Hook for Linked {
            fn name(&self) -> &'static str {
                "linked"
            }
        }
        let linked: HookFactory = Arc::new(|_| vec![Box::new(Linked) as Box<dyn Hook>]);
        let chain = configured.chain(0, &linked);
        assert_eq!(
            chain.names().collect::<Vec<_>>(),
            ["interval variation", "linked"]
        );
        assert!(ConfiguredHooks::default().chain(0, &no_hooks()).is_empty());
    }

    #[test]
    fn operators_register_their_own_names() {
        struct Mine;
        impl Hook for Mine {
            fn name(&self) -> &'static str {
                "mine"
            }
        }
        let mut registry = Registry::builtin();
        registry.register("mine", |_| {
            Ok(Arc::new(|_| Box::new(Mine) as Box<dyn Hook>))
        });
        let built = registry.build(&hooks("post: [{name: mine}]")).unwrap();
        assert_eq!(
            built.chain(3, &no_hooks()).names().collect::<Vec<_>>(),
            ["mine"]
        );
    }
}
