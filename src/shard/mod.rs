//! One shard: a pinned executor that owns a slice of the infohashes, its
//! swarms and its sockets. Everything here is touched by one thread only
//! (`Rc`, `RefCell`, `Cell`): no locks or atomics on the request path.

mod answer;
mod forward;
mod full_scrape;
mod gather;
pub mod heartbeat;
mod http;
pub mod mesh;
mod replica;
mod snapshot;
mod udp;
mod wait;

use crate::config::{Checked, Config, TrackerConfig};
use crate::metrics::counters::{Counters, Forwarded};
use crate::metrics::latency::Latency;
use crate::metrics::{Registry, ShardFigures};
use crate::middleware::{ConfiguredHooks, HookFactory};
use crate::net::poller::Poller;
use crate::net::stream::Listener;
use crate::placement::owner::Owner;
use crate::protocol::connection_id::ConnectionIdKey;
use crate::storage::memory::MemoryStore;
use crate::storage::snapshot::{Snapshots, TorrentRecord};
use crate::storage::Limits;
use crate::tracker::{Settings, Tracker};
use mesh::{Forward, Mesh};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often a shard wakes for housekeeping: expiry slices, shutdown.
const TICK: Duration = Duration::from_millis(100);

/// Read-only facts every shard shares.
pub struct Common {
    pub config: Config,
    /// What validating the config parsed (CPUs, routes, trusted proxies).
    pub checked: Checked,
    pub owner: Owner,
    pub connection_ids: ConnectionIdKey,
    pub start: Instant,
    pub shutdown: Arc<AtomicBool>,
    /// The hooks named in the config, checked, and the tracker settings;
    /// replaced on a reload.
    pub live: Reloads,
    /// An operator's own hooks, linked with `Server::with_hooks`.
    pub linked_hooks: HookFactory,
    /// Why the process stops on its own, if it does: the first fatal error.
    pub failure: std::sync::Mutex<Option<String>>,
    pub threads: Arc<heartbeat::ShardThreads>,
    /// Where the shards publish their figures for the metrics endpoint.
    pub metrics: Arc<Registry>,
    /// The snapshot writer, when `storage.snapshot.path` is set.
    pub snapshots: Option<Arc<Snapshots>>,
    /// The Redis service thread's channels, with `storage.backend: redis`.
    pub replication: Option<Arc<crate::storage::replica::Replication>>,
    /// Private mode's link to its database thread, with `private.enabled`.
    pub private: Option<Arc<crate::private::Link>>,
}

/// What a reload changes on a running shard: the hook chains and the
/// tracker's answer settings (intervals, numwant, scrape limit, peer
/// lifetime, subnet preference).
pub struct Live {
    pub hooks: ConfiguredHooks,
    pub tracker: TrackerConfig,
    /// The certificate for new HTTPS connections (with `http.tls.listen`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The latest checked live configuration, for the shards to take on their
/// next housekeeping tick (a reload builds it off the shards; a shard only
/// reads the generation there, never on the request path).
pub struct Reloads {
    generation: std::sync::atomic::AtomicU64,
    latest: std::sync::Mutex<Arc<Live>>,
}

impl Reloads {
    pub fn new(live: Live) -> Self {
        Self {
            generation: Default::default(),
            latest: std::sync::Mutex::new(Arc::new(live)),
        }
    }

    /// Hands a new live configuration to every shard.
    pub fn publish(&self, live: Live) {
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Arc::new(live);
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn latest(&self) -> Arc<Live> {
        match self.latest.lock() {
            Ok(latest) => latest.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Common {
    /// Stops every shard because of `reason`; the exit status says so.
    pub fn fail(&self, reason: String) {
        tracing::error!("{reason}; stopping");
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(reason);
        }
        self.shutdown.store(true, Ordering::Relaxed);
    }
}

/// What one shard is handed at start (all of it `Send`).
pub struct Plan {
    pub id: usize,
    pub udp_sockets: Vec<socket2::Socket>,
    pub http_listeners: Vec<socket2::Socket>,
    pub tls_listeners: Vec<socket2::Socket>,
    pub links: mesh::Links,
    /// This shard's torrents from the snapshot read at start.
    pub restored: Restored,
}

/// A shard's part of a snapshot read back at start.
#[derive(Default)]
pub struct Restored {
    pub torrents: Vec<TorrentRecord>,
    /// Seconds since the snapshot was taken: the peers' lifetime spent.
    pub elapsed: u64,
}

/// Time, read once per batch (vDSO, no system call).
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    /// When the batch was read: request latency.
    now: Instant,
    /// Unix seconds: connection ids, comparable between instances.
    unix: u32,
    /// Seconds since start: peer expiry.
    mono: u32,
}

impl Clock {
    fn read(start: Instant) -> Self {
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let now = Instant::now();
        Clock {
            now,
            unix,
            mono: now.duration_since(start).as_secs() as u32,
        }
    }
}

/// One core's tracker and the I/O around it.
pub(crate) struct Shard {
    id: usize,
    common: Arc<Common>,
    /// The clock as of the last housekeeping tick: for HTTP announces,
    /// whose peers' expiry needs whole seconds, not a clock read each.
    coarse_clock: Cell<Clock>,
    /// Every tracker decision, over this shard's swarms and hooks.
    tracker: RefCell<Tracker<MemoryStore>>,
    counters: Counters,
    /// Present when `metrics.latency_histograms` is on.
    latency: Option<Latency>,
    udp: udp::UdpSide,
    http: http::HttpSide,
    mesh: Mesh,
    /// The last snapshot generation this shard started exporting.
    snapshot_generation: Cell<u64>,
    /// The reload generation this shard's chain and settings came from.
    live_generation: Cell<u64>,
}

impl Shard {
    fn clock(&self) -> Clock {
        Clock::read(self.common.start)
    }

    /// Queues `message` for shard `owner`, counted.
    fn forward(&self, owner: usize, message: Forward) {
        let kind = match &message {
            Forward::UdpAnnounce { .. } => Forwarded::UdpAnnounce,
            Forward::HttpAnnounce { .. } => Forwarded::HttpAnnounce,
            Forward::ScrapeQuery { .. } | Forward::FullScrapeSlice { .. } => Forwarded::ScrapePart,
        };
        self.counters.forwarded(kind, 1);
        self.mesh.forward(owner, message);
    }

    fn try_flush(&self) -> bool {
        self.mesh.try_flush(&self.common.shutdown)
    }

    /// Post-hooks of the announces whose answers just left.
    fn run_after_hooks(&self, after: &mut Vec<crate::tracker::AfterAnnounce>) {
        if !after.is_empty() {
            self.tracker.borrow_mut().run_after_hooks(after);
        }
    }

    fn housekeeping(&self) {
        let clock = self.clock();
        self.coarse_clock.set(clock);
        let done = self.tracker.borrow_mut().expire(clock.mono);
        self.counters
            .sweep(clock.now.elapsed(), done.peers, done.torrents);
        self.http.poller.expire(clock.now);
        self.take_reload();
        self.tracker
            .borrow_mut()
            .private_tick(clock.unix, clock.mono);
        replica::exchange(self, clock);
        if let Some(generation) = self.common.metrics.wanted(self.id) {
            self.common
                .metrics
                .publish(self.id, generation, self.figures());
        }
    }

    /// Takes a reload, if one came: the new settings, and the chain rebuilt
    /// (hooks that take their new options keep their state, see
    /// `Chain::reload`).
    fn take_reload(&self) {
        let generation = self.common.live.generation();
        if generation == self.live_generation.get() {
            return;
        }
        self.live_generation.set(generation);
        let live = self.common.live.latest();
        let fresh = live.hooks.chain(self.id, &self.common.linked_hooks);
        let mut tracker = self.tracker.borrow_mut();
        tracker.reload_hooks(fresh);
        tracker.reload_settings(settings(&live.tracker, &self.common.config));
        *self.http.tls.borrow_mut() = live.tls.as_ref().map(crate::net::tls::per_shard);
        tracing::info!(shard = self.id, "configuration reloaded");
    }

    /// A copy of this shard's counters and gauges.
    fn figures(&self) -> ShardFigures {
        ShardFigures {
            counters: self.counters.snapshot(),
            swarms: self.tracker.borrow().totals(),
            latency: self.latency.as_ref().map(Latency::snapshot),
        }
    }
}

/// A shard's tracker settings: `tracker` as reloaded, the HTTP switches as
/// started.
fn settings(tracker: &TrackerConfig, config: &Config) -> Settings {
    Settings::new(
        tracker,
        config.http.allow_ip_spoofing,
        config.http.dual_stack,
    )
}

/// Sets the shared shutdown flag if the shard's thread unwinds, so one
/// shard's failure stops the process instead of leaving it half-served.
struct StopAllOnPanic(Arc<AtomicBool>);

impl Drop for StopAllOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// The body of shard `plan.id`'s executor; returns at shutdown.
pub async fn run(plan: Plan, common: Arc<Common>) -> ShardFigures {
    let _guard = StopAllOnPanic(common.shutdown.clone());
    common.threads.register(plan.id);
    let links = plan.links.connect().await;
    let config = &common.config;
    let udp = udp::UdpSide::new(plan.udp_sockets, config.udp.batch_size);
    // Out of descriptors or memory here stops the server with the reason,
    // like a failed socket.
    let http = Poller::new().and_then(|poller| {
        let listen = |sockets: Vec<socket2::Socket>| {
            sockets
                .into_iter()
                .map(|socket| Listener::new(socket, &poller))
                .collect::<std::io::Result<Vec<_>>>()
        };
        let listeners = (listen(plan.http_listeners)?, listen(plan.tls_listeners)?);
        Ok((poller.clone(), listeners))
    });
    let (poller, (listeners, tls_listeners)) = match http {
        Ok(http) => http,
        Err(e) => {
            common.fail(format!("shard {}: setting up HTTP failed: {e}", plan.id));
            common.threads.unregister(plan.id);
            return ShardFigures::default();
        }
    };
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed).expect("the OS random source failed");
    let limits = Limits::per_shard(
        config.tracker.max_torrents,
        config.tracker.max_peers_per_torrent,
        common.owner.shards(),
    );
    let mut tracker = Tracker::new(
        plan.id,
        settings(&common.live.latest().tracker, config),
        MemoryStore::new(limits),
        common
            .live
            .latest()
            .hooks
            .chain(plan.id, &common.linked_hooks),
        fastrand::Rng::with_seed(u64::from_le_bytes(seed)),
    );
    if common.replication.is_some() {
        tracker.keep_journal();
    }
    if let Some(link) = &common.private {
        let mut gate = crate::private::Gate::new(
            plan.id,
            link.clone(),
            &config.private,
            config.tracker.peer_lifetime.as_secs(),
        );
        let clock = Clock::read(common.start);
        gate.start(clock.unix, clock.mono);
        tracker.set_private(gate);
    }
    let clock = Clock::read(common.start);
    snapshot::restore(plan.id, &mut tracker, plan.restored, clock.mono);
    let shard = Rc::new(Shard {
        id: plan.id,
        snapshot_generation: Cell::new(0),
        live_generation: Cell::new(common.live.generation()),
        tracker: RefCell::new(tracker),
        counters: Counters::default(),
        latency: common.metrics.latency_histograms.then(Latency::default),
        udp,
        http: http::HttpSide::new(
            &config.http,
            &common.checked,
            poller,
            listeners,
            tls_listeners,
            common
                .live
                .latest()
                .tls
                .as_ref()
                .map(crate::net::tls::per_shard),
        ),
        mesh: Mesh::new(links.forward_to, links.reply_to),
        coarse_clock: Cell::new(Clock::read(common.start)),
        common: common.clone(),
    });

    let mut tasks = Vec::new();
    for endpoint in 0..shard.udp.endpoints.len() {
        tasks.push(glommio::spawn_local(udp::serve_socket(
            shard.clone(),
            endpoint,
        )));
    }
    for (secure, count) in [
        (false, shard.http.listeners.len()),
        (true, shard.http.tls_listeners.len()),
    ] {
        for listener in 0..count {
            tasks.push(glommio::spawn_local(http::serve_listener(
                shard.clone(),
                listener,
                secure,
            )));
        }
    }
    tasks.push(glommio::spawn_local(forward::flusher(shard.clone())));
    if !shard.http.listeners.is_empty() || !shard.http.tls_listeners.is_empty() {
        tasks.push(glommio::spawn_local(crate::net::poller::drive(
            shard.http.poller.clone(),
        )));
    }
    for rx in links.forward_from {
        tasks.push(glommio::spawn_local(forward::serve_forwarded(
            shard.clone(),
            rx,
        )));
    }
    for rx in links.reply_from {
        tasks.push(glommio::spawn_local(forward::serve_replies(
            shard.clone(),
            rx,
        )));
    }

    while !common.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(TICK).await;
        shard.housekeeping();
        snapshot::maybe_start(&shard);
    }
    for task in tasks {
        task.cancel().await;
    }
    replica::exchange(&shard, shard.clock());
    snapshot::export_final(&shard);
    shard.tracker.borrow_mut().stop();
    common.threads.unregister(shard.id);
    shard.figures()
}
