//! A custom tracker binary with hooks of its own, beside the built-in ones
//! from the config. Two ways to add a hook:
//!
//! - link it directly (`Server::with_hooks`): it runs on every shard after
//!   the configured hooks, whatever the config says;
//! - register a name (`Registry::register`) that the config can then use in
//!   `hooks.pre` or `hooks.post`, with options checked at start and reload.
//!
//! Run: `cargo run --release --example custom_hook -- config.yaml`, with
//! for example this in the config:
//!
//! ```yaml
//! hooks:
//!   pre:
//!     - name: minimum port
//!       options: {port: 1024}
//! ```

use serde::Deserialize;
use shoal::middleware::{options::Maker, AnnounceContext, Hook, Refusal, Registry};
use shoal::server::Server;
use std::sync::Arc;

/// Linked hook: refuses odd ports and shortens the interval of the rest.
struct NoOddPorts;

impl Hook for NoOddPorts {
    fn name(&self) -> &'static str {
        "no odd ports"
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        if ctx.announce.port % 2 == 1 {
            return Err(Refusal::new("odd ports are not welcome")); // the client sees this
        }
        ctx.interval = 600; // pre-hooks may change the answer
        Ok(())
    }
}

/// Registered hook: `minimum port` with its `port` option.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MinimumPortOptions {
    port: u16,
}

struct MinimumPort {
    port: u16,
}

impl Hook for MinimumPort {
    fn name(&self) -> &'static str {
        "minimum port"
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        if ctx.announce.port < self.port {
            return Err(Refusal::new("port too low"));
        }
        Ok(())
    }
}

/// Checks the options once (a bad one stops the start, naming the key) and
/// returns what builds the hook on each shard's own thread.
fn build_minimum_port(options: &serde_yaml::Value) -> Result<Maker, String> {
    let MinimumPortOptions { port } = shoal::middleware::options::parse_options(options)?;
    if port == 0 {
        return Err("port: must be above 0".into());
    }
    Ok(Arc::new(move |_shard| {
        Box::new(MinimumPort { port }) as Box<dyn Hook>
    }))
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "config.yaml".into());
    let mut registry = Registry::builtin();
    registry.register("minimum port", build_minimum_port);
    let config = match shoal::config::load(path.as_ref(), &[]) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let running = Server::new(config)
        .with_registry(registry)
        .with_hooks(Arc::new(|_shard| {
            vec![Box::new(NoOddPorts) as Box<dyn Hook>]
        }))
        .start()
        .expect("the tracker starts");
    running.join().expect("the tracker stops cleanly");
}
