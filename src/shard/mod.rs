//! One shard: a pinned executor that owns a slice of the infohashes, its
//! swarms and its sockets. Everything here is touched by one thread only
//! (`Rc`, `RefCell`, `Cell`): no locks or atomics on the request path.

pub mod cpus;
mod forward;
pub mod heartbeat;
mod http;
pub mod mesh;
pub mod owner;
mod udp;
mod wait;

use crate::config::Config;
use crate::metrics::counters::{Counters, Forwarded};
use crate::metrics::latency::Latency;
use crate::metrics::{Registry, ShardFigures};
use crate::middleware::{HookFactory, Pipeline};
use crate::net::poller::Poller;
use crate::net::stream::Listener;
use crate::protocol::connection_id::ConnectionIdKey;
use crate::swarm::Swarms;
use glommio::channels::shared_channel::ConnectedSender;
use mesh::{Forward, ForwardBatch, Reply, ReplyBatch};
use owner::Owner;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often a shard wakes for housekeeping: expiry slices, shutdown.
const TICK: Duration = Duration::from_millis(100);
/// Torrents visited per tick at least; more when the shard holds many, so
/// that a full sweep takes about `SWEEP_TICKS` ticks (one minute).
const MIN_SWEEP_SLICE: usize = 256;
const SWEEP_TICKS: usize = 600;

/// Read-only facts every shard shares.
pub struct Common {
    pub config: Config,
    pub owner: Owner,
    pub connection_ids: ConnectionIdKey,
    pub start: Instant,
    pub shutdown: Arc<AtomicBool>,
    pub hooks: HookFactory,
    /// Why the process stops on its own, if it does: the first fatal error.
    pub failure: std::sync::Mutex<Option<String>>,
    pub threads: Arc<heartbeat::ShardThreads>,
    /// Where the shards publish their figures for the metrics endpoint.
    pub metrics: Arc<Registry>,
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
    pub links: mesh::Links,
}

/// Response settings in wire units, derived from the config once.
pub(crate) struct Settings {
    interval: u32,
    min_interval: u32,
    default_numwant: u32,
    max_numwant: u32,
    peer_lifetime: u32,
    max_scrape: usize,
    batch_size: usize,
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

pub(crate) struct Shard {
    id: usize,
    /// The clock as of the last housekeeping tick: for HTTP announces,
    /// whose peers' expiry needs whole seconds, not a clock read each.
    coarse_clock: Cell<Clock>,
    common: Arc<Common>,
    settings: Settings,
    swarms: RefCell<Swarms>,
    rng: RefCell<fastrand::Rng>,
    hooks: RefCell<Pipeline>,
    counters: Counters,
    /// Present when `metrics.latency_histograms` is on.
    latency: Option<Latency>,
    udp: Vec<udp::Endpoint>,
    forward_to: Vec<Option<ConnectedSender<ForwardBatch>>>,
    reply_to: Vec<Option<ConnectedSender<ReplyBatch>>>,
    /// Requests for other shards gathered during this turn, by shard.
    forward_outbox: RefCell<Vec<ForwardBatch>>,
    reply_outbox: RefCell<Vec<ReplyBatch>>,
    scrapes: RefCell<forward::PendingScrapes>,
    /// UDP answers the mesh tasks send, one batch per socket, shared by
    /// them (borrowed only between awaits).
    mesh_send: RefCell<Vec<crate::net::mmsg::SendBatch>>,
    http: http::HttpSide,
    http_waiters: wait::Waiters<http::HttpReply>,
    /// Wakes the flusher that sends HTTP requests' outboxes.
    flush_notify: wait::Notify,
}

impl Shard {
    fn clock(&self) -> Clock {
        Clock::read(self.common.start)
    }

    fn forward(&self, owner: usize, message: Forward) {
        let kind = match &message {
            Forward::UdpAnnounce { .. } => Forwarded::UdpAnnounce,
            Forward::HttpAnnounce { .. } => Forwarded::HttpAnnounce,
            Forward::ScrapeQuery { .. } => Forwarded::ScrapePart,
        };
        self.counters.forwarded(kind, 1);
        self.forward_outbox.borrow_mut()[owner].push(message);
    }

    fn reply(&self, origin: usize, message: Reply) {
        self.reply_outbox.borrow_mut()[origin].push(message);
    }

    // No task ever waits for room on a cross-shard channel: everything is
    // sent with `try_send`, and a batch that does not fit stays queued for
    // the flusher, which retries shortly. So shards can never wait on each
    // other in a cycle, whatever the load (a reviewer reproduced such a
    // cycle when tasks awaited room on full channels).

    /// Sends every queued batch that fits now; wakes the flusher to retry
    /// the rest. Returns whether anything was left.
    fn try_flush(&self) -> bool {
        let forwards = try_send_all(&self.forward_to, &self.forward_outbox, &self.common);
        let replies = try_send_all(&self.reply_to, &self.reply_outbox, &self.common);
        let left_over = forwards || replies;
        if left_over {
            self.flush_notify.notify();
        }
        left_over
    }

    /// Whether a UDP scrape may fan out to these owners now (their queues
    /// are not saturated, and not too many gathers are waiting).
    fn may_start_udp_gather(&self, owners: impl Iterator<Item = usize>) -> bool {
        self.scrapes.borrow().len() < MAX_PENDING_GATHERS
            && owners.into_iter().all(|o| self.may_queue_udp_forward(o))
    }

    /// Whether a UDP forward to `owner` may still be queued: the queue to
    /// a saturated shard is capped (UDP clients retry a lost announce).
    fn may_queue_udp_forward(&self, owner: usize) -> bool {
        self.forward_outbox.borrow()[owner].len() < MAX_QUEUED_UDP_FORWARDS
    }

    fn housekeeping(&self) {
        let clock = self.clock();
        self.coarse_clock.set(clock);
        let mut swarms = self.swarms.borrow_mut();
        let slice = (swarms.torrent_count() / SWEEP_TICKS).max(MIN_SWEEP_SLICE);
        let done = swarms.expire_slice(clock.mono, slice);
        drop(swarms);
        self.counters
            .sweep(clock.now.elapsed(), done.peers, done.torrents);
        self.http.poller.expire(clock.now);
        if let Some(generation) = self.common.metrics.wanted(self.id) {
            self.common
                .metrics
                .publish(self.id, generation, self.figures());
        }
    }

    /// A copy of this shard's counters and gauges.
    fn figures(&self) -> ShardFigures {
        ShardFigures {
            counters: self.counters.snapshot(),
            swarms: self.swarms.borrow().totals(),
            latency: self.latency.as_ref().map(Latency::snapshot),
        }
    }
}

/// UDP forwards queued for one saturated shard before new ones are dropped.
const MAX_QUEUED_UDP_FORWARDS: usize = 65_536;
/// Cross-shard scrape gathers in flight before new UDP ones are dropped.
const MAX_PENDING_GATHERS: usize = 65_536;

/// `try_send`s each non-empty outbox; what does not fit is put back
/// (ahead of anything queued since). Returns whether anything is left.
fn try_send_all<T: Send + 'static>(
    senders: &[Option<ConnectedSender<Vec<T>>>],
    outboxes: &RefCell<Vec<Vec<T>>>,
    common: &Common,
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
            Err(_) => common.shutdown.store(true, Ordering::Relaxed),
        }
    }
    left_over
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
    let shards = common.owner.shards();
    let links = plan.links.connect().await;
    let config = &common.config;
    let settings = Settings {
        interval: config.tracker.announce_interval.as_secs() as u32,
        min_interval: config.tracker.min_announce_interval.as_secs() as u32,
        default_numwant: config.tracker.default_numwant,
        max_numwant: config.tracker.max_numwant,
        peer_lifetime: config.tracker.peer_lifetime.as_secs() as u32,
        max_scrape: config.tracker.max_scrape_infohashes,
        batch_size: config.udp.batch_size,
    };
    let udp: Vec<udp::Endpoint> = plan
        .udp_sockets
        .into_iter()
        .map(udp::Endpoint::new)
        .collect();
    let mesh_send = RefCell::new(
        udp.iter()
            .map(|_| crate::net::mmsg::SendBatch::new(settings.batch_size))
            .collect(),
    );
    let trusted = config
        .trusted_proxies()
        .expect("trusted proxies were validated with the config");
    // Out of descriptors or memory here stops the server with the reason,
    // like a failed socket.
    let http = Poller::new().and_then(|poller| {
        let listeners = plan
            .http_listeners
            .into_iter()
            .map(|socket| Listener::new(socket, &poller))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok((poller, listeners))
    });
    let (poller, listeners) = match http {
        Ok(http) => http,
        Err(e) => {
            common.fail(format!("shard {}: setting up HTTP failed: {e}", plan.id));
            common.threads.unregister(plan.id);
            return ShardFigures::default();
        }
    };
    let mut seed = [0u8; 8];
    getrandom::getrandom(&mut seed).expect("the OS random source failed");
    let shard = Rc::new(Shard {
        id: plan.id,
        settings,
        swarms: RefCell::new(Swarms::default()),
        rng: RefCell::new(fastrand::Rng::with_seed(u64::from_le_bytes(seed))),
        hooks: RefCell::new(Pipeline::new((common.hooks)(plan.id))),
        counters: Counters::default(),
        latency: common.metrics.latency_histograms.then(Latency::default),
        udp,
        forward_to: links.forward_to,
        reply_to: links.reply_to,
        forward_outbox: RefCell::new((0..shards).map(|_| Vec::new()).collect()),
        reply_outbox: RefCell::new((0..shards).map(|_| Vec::new()).collect()),
        scrapes: RefCell::new(Default::default()),
        mesh_send,
        http: http::HttpSide::new(&config.http, trusted, poller, listeners),
        http_waiters: Default::default(),
        flush_notify: Default::default(),
        coarse_clock: Cell::new(Clock::read(common.start)),
        common: common.clone(),
    });

    let mut tasks = Vec::new();
    for endpoint in 0..shard.udp.len() {
        tasks.push(glommio::spawn_local(udp::serve_socket(
            shard.clone(),
            endpoint,
        )));
    }
    for listener in 0..shard.http.listeners.len() {
        tasks.push(glommio::spawn_local(http::serve_listener(
            shard.clone(),
            listener,
        )));
    }
    tasks.push(glommio::spawn_local(http::flusher(shard.clone())));
    if !shard.http.listeners.is_empty() {
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
    }
    for task in tasks {
        task.cancel().await;
    }
    common.threads.unregister(shard.id);
    shard.figures()
}
