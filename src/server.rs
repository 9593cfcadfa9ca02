//! Start-up and shutdown: validate, bind every socket from this thread in
//! shard order, then start one pinned executor per shard.

use crate::config::{Backend, Checked, Config, OnBadSnapshot};
use crate::metrics::endpoint::Endpoint;
use crate::metrics::{Registry, ShardFigures};
use crate::middleware::registry::no_hooks;
use crate::middleware::{self, ConfiguredHooks, HookFactory};
use crate::net::udp::{bind_group, GroupOptions};
use crate::placement::owner::Owner;
use crate::protocol::connection_id::ConnectionIdKey;
use crate::shard::{self, heartbeat, mesh, Common, Plan, Restored};
use crate::storage::replica::{self, Replication};
use crate::storage::snapshot::{self, Found, Snapshots, TorrentRecord};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A tracker to start. The hooks named in `hooks.pre` / `hooks.post` come
/// from the registry (`with_registry` adds an operator's own names);
/// `with_hooks` links an operator's hooks directly, after those.
pub struct Server {
    config: Config,
    registry: middleware::Registry,
    hooks: HookFactory,
}

/// A started tracker.
pub struct Running {
    /// The hook names a reload may use (the start's).
    registry: middleware::Registry,
    executors: Vec<ExecutorJoinHandle<ShardFigures>>,
    heartbeat: std::thread::JoinHandle<()>,
    snapshots: Service<Snapshots>,
    /// The Redis service thread, with `storage.backend: redis`.
    replication: Service<Replication>,
    /// Private mode's database thread, with `private.enabled`.
    private: Service<crate::private::Link>,
    metrics: Option<Endpoint>,
    shutdown: Arc<AtomicBool>,
    common: Arc<Common>,
    /// The bound UDP addresses, in `udp.listen` order (port 0 resolved).
    pub udp_addrs: Vec<SocketAddr>,
    /// The bound HTTP addresses, in `http.listen` order.
    pub http_addrs: Vec<SocketAddr>,
    /// The bound HTTPS addresses, in `http.tls.listen` order.
    pub https_addrs: Vec<SocketAddr>,
    /// The bound metrics addresses, in `metrics.listen` order.
    pub metrics_addrs: Vec<SocketAddr>,
}

impl Server {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            registry: middleware::Registry::builtin(),
            hooks: no_hooks(),
        }
    }

    pub fn with_hooks(mut self, hooks: HookFactory) -> Self {
        self.hooks = hooks;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn with_registry(mut self, registry: middleware::Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Checks the configuration, its hook chains and its TLS files, as
    /// `start` would.
    pub fn check(&self) -> Result<(Checked, ConfiguredHooks), String> {
        let (checked, live) = self.check_live()?;
        Ok((checked, live.hooks))
    }

    fn check_live(&self) -> Result<(Checked, shard::Live), String> {
        let checked = self.config.validate()?;
        let serving_tls = !self.config.http.tls.listen.is_empty();
        let live = live(&self.registry, &self.config, serving_tls)?;
        Ok((checked, live))
    }

    pub fn start(self) -> io::Result<Running> {
        let (checked, live) = self
            .check_live()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let cpus = checked.cpus.clone();
        let shards = cpus.len();
        if (1..shards).any(|i| cpus[..i].contains(&cpus[i])) {
            tracing::warn!(
                ?cpus,
                "runtime.cores lists a CPU twice: those shards share it"
            );
        }
        let owner = Owner::new(shards);
        let (restored, kept_key) = self.restore(&owner, shards)?;

        // Every group binds shard 0's socket first, then 1's...: the
        // kernel's socket index is the shard id the BPF program returns.
        let options = GroupOptions {
            kernel_steering: self.config.udp.kernel_steering,
            recv_buffer: self.config.udp.recv_buffer.0 as usize,
            send_buffer: self.config.udp.send_buffer.0 as usize,
        };
        let mut per_shard: Vec<Vec<socket2::Socket>> = (0..shards).map(|_| Vec::new()).collect();
        let mut udp_addrs = Vec::new();
        for addr in &self.config.udp.listen {
            let group = bind_group(*addr, &owner, &options).map_err(|e| {
                io::Error::new(e.kind(), format!("udp.listen: cannot bind {addr}: {e}"))
            })?;
            udp_addrs.push(group[0].local_addr()?.as_socket().unwrap_or(*addr));
            for (shard, socket) in group.into_iter().enumerate() {
                per_shard[shard].push(socket);
            }
        }

        let mut http_per_shard: Vec<Vec<socket2::Socket>> =
            (0..shards).map(|_| Vec::new()).collect();
        let mut http_addrs = Vec::new();
        for addr in &self.config.http.listen {
            let group = crate::net::tcp::bind_group(*addr, shards).map_err(|e| {
                io::Error::new(e.kind(), format!("http.listen: cannot bind {addr}: {e}"))
            })?;
            http_addrs.push(group[0].local_addr()?.as_socket().unwrap_or(*addr));
            for (shard, socket) in group.into_iter().enumerate() {
                http_per_shard[shard].push(socket);
            }
        }
        let mut tls_per_shard: Vec<Vec<socket2::Socket>> =
            (0..shards).map(|_| Vec::new()).collect();
        let mut https_addrs = Vec::new();
        for addr in &self.config.http.tls.listen {
            let group = crate::net::tcp::bind_group(*addr, shards).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("http.tls.listen: cannot bind {addr}: {e}"),
                )
            })?;
            https_addrs.push(group[0].local_addr()?.as_socket().unwrap_or(*addr));
            for (shard, socket) in group.into_iter().enumerate() {
                tls_per_shard[shard].push(socket);
            }
        }

        heartbeat::install()?;
        let shutdown = Arc::new(AtomicBool::new(false));
        let registry = Arc::new(Registry::new(
            shards,
            self.config.metrics.latency_histograms,
        ));
        // Bound before any shard starts: a taken port fails the start.
        let metrics = if self.config.metrics.listen.is_empty() {
            None
        } else {
            Some(Endpoint::start(
                &self.config.metrics.listen,
                registry.clone(),
                self.config.metrics.shard_deadline,
                shutdown.clone(),
            )?)
        };
        let metrics_addrs = metrics.as_ref().map_or(Vec::new(), |m| m.addrs.clone());
        let threads = Arc::new(heartbeat::ShardThreads::new(shards));
        let udp = &self.config.udp;
        let lifetime = udp.connection_id_lifetime.as_secs() as u32;
        let configured_key = !udp.connection_id_key.is_empty();
        let connection_ids = match kept_key {
            Some(keys) if !configured_key => ConnectionIdKey::from_keys(keys, lifetime),
            _ => ConnectionIdKey::new(&udp.connection_id_key, lifetime),
        };
        let snapshot_config = &self.config.storage.snapshot;
        let snapshots = if snapshot_config.path.is_empty() {
            None
        } else {
            let plan = snapshot::writer::Plan {
                path: snapshot_config.path.clone().into(),
                interval: snapshot_config.interval,
                shards,
                connection_id_key: (!configured_key).then(|| connection_ids.keys()),
            };
            Some(snapshot::writer::start(plan, shutdown.clone())?)
        };
        let replication = match self.config.storage.backend {
            Backend::Memory => None,
            Backend::Redis => {
                let (replication, ends) = Replication::new(shards);
                let replication = Arc::new(replication);
                let service = replica::redis::Service::new(
                    self.config.storage.redis.clone(),
                    owner,
                    self.config.tracker.peer_lifetime,
                    ends,
                    replication.clone(),
                );
                let thread = std::thread::Builder::new()
                    .name("shoal-redis".into())
                    .spawn(move || service.run())?;
                Some((replication, thread))
            }
        };
        let private = if self.config.private.enabled {
            let (link, ends) = crate::private::Link::new(shards);
            // The clients' last reports a previous run kept, to the shards
            // that own their torrents now.
            let journal = std::path::Path::new(&self.config.private.journal_dir);
            let mut by_shard: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
            for client in crate::private::service::journal::Journal::new(journal).take_clients() {
                by_shard[owner.of(&client.info_hash)].push(client);
            }
            link.set_restored(by_shard);
            let link = Arc::new(link);
            let service = crate::private::service::Service::new(
                self.config.private.clone(),
                link.clone(),
                ends,
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
            let thread = service.and_then(|service| {
                std::thread::Builder::new()
                    .name("shoal-db".into())
                    .spawn(move || service.run())
            });
            match thread {
                Ok(thread) => Some((link, thread)),
                Err(e) => {
                    abandon(&shutdown, &snapshots, &replication, &None, metrics);
                    return Err(e);
                }
            }
        } else {
            None
        };
        let common = Arc::new(Common {
            private: private.as_ref().map(|(p, _)| p.clone()),
            replication: replication.as_ref().map(|(r, _)| r.clone()),
            threads: threads.clone(),
            connection_ids,
            snapshots: snapshots.as_ref().map(|(s, _)| s.clone()),
            owner,
            start: Instant::now(),
            shutdown: shutdown.clone(),
            live: shard::Reloads::new(live),
            linked_hooks: self.hooks,
            checked,
            failure: Default::default(),
            metrics: registry,
            config: self.config,
        });
        let rt = &common.config.runtime;
        let mut executors = Vec::with_capacity(shards);
        let links = mesh::full_mesh(shards, rt.channel_capacity);
        let sockets = per_shard
            .into_iter()
            .zip(http_per_shard.into_iter().zip(tls_per_shard));
        let mut restored = restored.into_iter();
        for ((id, (cpu, (udp_sockets, (http_listeners, tls_listeners)))), links) in
            cpus.iter().zip(sockets).enumerate().zip(links)
        {
            let plan = Plan {
                id,
                udp_sockets,
                http_listeners,
                tls_listeners,
                links,
                restored: restored.next().unwrap_or_default(),
            };
            let common = common.clone();
            let handle = LocalExecutorBuilder::new(Placement::Fixed(*cpu))
                .name(&format!("shoal-shard-{id}"))
                .io_memory(rt.io_memory.0 as usize)
                .spin_before_park(rt.spin_before_park)
                .preempt_timer(rt.preempt_timer)
                .spawn(move || shard::run(plan, common))
                .map_err(|e| {
                    io::Error::other(format!("cannot start shard {id} on CPU {cpu}: {e}"))
                });
            match handle {
                Ok(h) => executors.push(h),
                Err(e) => {
                    abandon(&shutdown, &snapshots, &replication, &private, metrics);
                    return Err(e);
                }
            }
        }
        let heartbeat = match heartbeat::spawn(threads, shutdown.clone()) {
            Ok(h) => h,
            Err(e) => {
                abandon(&shutdown, &snapshots, &replication, &private, metrics);
                return Err(e);
            }
        };
        tracing::info!(shards, cpus = ?cpus, udp = ?udp_addrs, http = ?http_addrs, https = ?https_addrs, metrics = ?metrics_addrs, "Shoal is serving");
        Ok(Running {
            registry: self.registry,
            executors,
            heartbeat,
            snapshots,
            replication,
            private,
            shutdown,
            common: common.clone(),
            udp_addrs,
            http_addrs,
            https_addrs,
            metrics_addrs,
            metrics,
        })
    }
}

/// What a start or a reload hands the shards: the hook chains, the
/// tracker settings and, when `serving_tls`, the certificate read now.
fn live(
    registry: &middleware::Registry,
    config: &Config,
    serving_tls: bool,
) -> Result<shard::Live, String> {
    let hooks = registry.build(&config.hooks)?;
    let tls = &config.http.tls;
    let tls = if serving_tls {
        Some(crate::net::tls::load(&tls.cert, &tls.key)?)
    } else {
        None
    };
    Ok(shard::Live {
        hooks,
        tracker: config.tracker.clone(),
        tls,
    })
}

type Service<T> = Option<(Arc<T>, std::thread::JoinHandle<()>)>;

/// A start that failed after the service threads began: they are told to
/// stop (the snapshot writer and the Redis thread wait for the shards).
fn abandon(
    shutdown: &AtomicBool,
    snapshots: &Service<Snapshots>,
    replication: &Service<Replication>,
    private: &Service<crate::private::Link>,
    metrics: Option<Endpoint>,
) {
    shutdown.store(true, Ordering::Relaxed);
    if let Some((s, _)) = snapshots {
        s.shards_gone();
    }
    if let Some((r, _)) = replication {
        r.shards_gone();
    }
    if let Some((p, _)) = private {
        p.shards_gone();
    }
    if let Some(m) = metrics {
        m.join();
    }
}

impl Server {
    /// Reads `storage.snapshot.path` back, if set: each torrent goes to
    /// the shard that owns it now. Returns the parts by shard and the
    /// connection-id key the snapshot kept.
    #[allow(clippy::type_complexity)]
    fn restore(
        &self,
        owner: &Owner,
        shards: usize,
    ) -> io::Result<(Vec<Restored>, Option<(u64, u64)>)> {
        let config = &self.config.storage.snapshot;
        let mut parts: Vec<Restored> = (0..shards).map(|_| Restored::default()).collect();
        if config.path.is_empty() {
            return Ok((parts, None));
        }
        let path = std::path::Path::new(&config.path);
        let started = std::time::Instant::now();
        let (header, torrents) = match snapshot::read(path) {
            Found::Nothing => {
                tracing::info!(path = %path.display(), "no snapshot yet: starting empty");
                return Ok((parts, None));
            }
            Found::Snapshot(header, torrents) => (header, torrents),
            Found::Bad(why) => {
                if config.on_bad_file == OnBadSnapshot::Fail {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("storage.snapshot: {why} (storage.snapshot.on_bad_file is fail)"),
                    ));
                }
                match snapshot::set_aside(path) {
                    Ok(aside) => tracing::error!(
                        "storage.snapshot: {why}; moved to {} and starting empty",
                        aside.display()
                    ),
                    Err(e) => tracing::error!(
                        "storage.snapshot: {why}; starting empty (cannot move it aside: {e})"
                    ),
                }
                return Ok((parts, None));
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let elapsed = now.saturating_sub(header.created_unix);
        let (count, peers) = (
            torrents.len(),
            torrents.iter().map(|t| t.peers.len()).sum::<usize>(),
        );
        for torrent in torrents {
            let part: &mut Vec<TorrentRecord> = &mut parts[owner.of(&torrent.info_hash)].torrents;
            part.push(torrent);
        }
        for part in &mut parts {
            part.elapsed = elapsed;
        }
        tracing::info!(
            path = %path.display(),
            torrents = count,
            peers,
            age_secs = elapsed,
            read_ms = started.elapsed().as_millis() as u64,
            "snapshot read; restoring its swarms"
        );
        Ok((parts, header.connection_id_key))
    }
}

/// Applies reloaded configurations to a running tracker (SIGHUP).
#[derive(Clone)]
pub struct Reloader {
    common: Arc<Common>,
    registry: middleware::Registry,
}

/// What a reload applies; the rest takes effect at the next start.
pub const RELOADED: &[&str] = &[
    "hooks",
    "tracker (but max_torrents and max_peers_per_torrent)",
    "http.tls.cert and http.tls.key (the files are read again)",
];

impl Reloader {
    /// Checks a newly loaded config as a start would and hands its hook
    /// chains and tracker settings to the shards (each takes them on its
    /// next tick, within 100 ms). A hook builder reads its files here, off
    /// the shards. On an error (a file that did not load included) nothing
    /// changes; either way the reload is counted. Returns what changed but
    /// needs a restart.
    pub fn reload(&self, loaded: Result<Config, String>) -> Result<Vec<&'static str>, String> {
        let result = loaded.and_then(|config| self.apply(&config));
        crate::metrics::reloads::record(result.is_ok());
        result
    }

    fn apply(&self, config: &Config) -> Result<Vec<&'static str>, String> {
        config.validate()?;
        // Listeners are fixed for the life of the process: the files are
        // read when the running process serves HTTPS.
        let serving_tls = !self.common.config.http.tls.listen.is_empty();
        self.common
            .live
            .publish(live(&self.registry, config, serving_tls)?);
        Ok(restart_needed(&self.common.config, config))
    }
}

/// The sections other than `RELOADED` that differ between two configs.
fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    let sections = [
        ("runtime", running.runtime != new.runtime),
        ("log", running.log != new.log),
        ("udp", running.udp != new.udp),
        ("http", !same_http(running, new)),
        (
            "tracker.max_torrents",
            running.tracker.max_torrents != new.tracker.max_torrents,
        ),
        (
            "tracker.max_peers_per_torrent",
            running.tracker.max_peers_per_torrent != new.tracker.max_peers_per_torrent,
        ),
        ("metrics", running.metrics != new.metrics),
        ("storage", running.storage != new.storage),
    ];
    sections
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
}

/// The HTTP sections differ in more than the TLS files (which a reload
/// applies).
fn same_http(running: &Config, new: &Config) -> bool {
    let mut new = new.http.clone();
    new.tls.cert.clone_from(&running.http.tls.cert);
    new.tls.key.clone_from(&running.http.tls.key);
    new == running.http
}

impl Running {
    /// A handle that applies reloaded configurations (see `Reloader`).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            common: self.common.clone(),
            registry: self.registry.clone(),
        }
    }

    /// Asks every shard to stop; `join` waits for them.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }

    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    /// Waits for every shard; `Err` if one failed rather than being asked
    /// to stop.
    pub fn join(self) -> Result<Vec<ShardFigures>, String> {
        let mut stats = Vec::new();
        let mut failure = None;
        for (id, handle) in self.executors.into_iter().enumerate() {
            match handle.join() {
                Ok(s) => stats.push(s),
                Err(e) => {
                    failure.get_or_insert(format!("shard {id} failed: {e}"));
                }
            }
        }
        let _ = self.heartbeat.join();
        // Every shard sent its final part (or never will): the writer puts
        // the snapshot in place and stops.
        if let Some((snapshots, writer)) = self.snapshots {
            snapshots.shards_gone();
            let _ = writer.join();
        }
        // The shards handed over their last changes: pushed, then done.
        if let Some((replication, service)) = self.replication {
            replication.shards_gone();
            let _ = service.join();
        }
        // The shards handed over their last accounting: written, or
        // journaled when the database is away, then done.
        if let Some((private, service)) = self.private {
            private.shards_gone();
            let _ = service.join();
        }
        // The shards are gone: the endpoint stops too (a shard that failed
        // set the flag already).
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(m) = self.metrics {
            m.join();
        }
        if let Some(reason) = self.common.failure.lock().ok().and_then(|mut f| f.take()) {
            failure.get_or_insert(reason);
        }
        failure.map_or(Ok(stats), Err)
    }
}
