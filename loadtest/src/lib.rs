//! Load generator for BitTorrent trackers: BEP 15 UDP (connect, announce,
//! scrape) and HTTP (announce, scrape over keep-alive HTTP/1.1), IPv4 and
//! IPv6. Every response is checked, so a broken server cannot look fast:
//! only answers that pass all checks count as `responses`.
//!
//! From code:
//!
//! ```no_run
//! use std::time::Duration;
//! use shoal_loadtest::{run, Options};
//!
//! let opts = Options::udp("127.0.0.1:6969".parse().unwrap())
//!     .duration(Duration::from_secs(2))
//!     .cpus(vec![1]);
//! let report = run(&opts).unwrap();
//! assert_eq!(report.errors, 0);
//! println!("{}", report.to_json());
//! ```
//!
//! Workers are threads, each optionally pinned to one CPU, each with its
//! own sockets (UDP) or connections (HTTP). Closed loop by default: every
//! socket keeps `inflight` requests outstanding and sends a new one as
//! soon as one is answered or times out. With `rate`, open loop: requests
//! go out on a fixed schedule, within the same window.
//!
//! The UDP worker is built to cost the server as little as possible per
//! answer and itself little more: `sendmmsg`/`recvmmsg` of up to 64
//! datagrams per call on connected non-blocking sockets, announces of a
//! batch sent as one UDP GSO message (`Options::gso`), requests patched
//! into preallocated templates, no allocation per request, and busy
//! polling while answers are due (a sleeping client makes the server pay
//! for waking it).
//!
//! Report semantics: `responses` are answers that passed every check,
//! `errors` are answers that failed one (by cause in `error_kinds`) plus
//! socket/connection failures, `timeouts` are requests unanswered within
//! `timeout` (their slot is reused; a later answer counts as `late`).
//! Everything is counted after `warmup`.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub mod bencode;
pub mod fill;
pub mod http;
mod http_driver;
pub mod options;
pub mod report;
pub mod stats;
pub mod udp;
mod udp_driver;
mod worker;
pub mod workload;

pub use options::{Mix, Mode, Options, Popularity};
pub use report::{ByAction, Latency, Report};
pub use stats::ErrorKind;

use stats::{Live, LiveTotals, WorkerStats};
use worker::WorkerCtx;
use workload::Workload;

#[derive(Debug)]
pub enum Error {
    /// Options out of range (the run did not start).
    Options(String),
    /// Setting up a socket, thread or CPU pinning failed.
    Io(String, std::io::Error),
    /// A worker thread died.
    Worker(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Options(m) => write!(f, "invalid options: {m}"),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::Worker(m) => write!(f, "worker failed: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Runs the load for `opts.warmup + opts.duration` and reports on the
/// measured part. Blocks the calling thread.
pub fn run(opts: &Options) -> Result<Report, Error> {
    opts.validate()?;
    let opts = Arc::new(opts.clone());
    let workload = Arc::new(Workload::new(&opts));
    let n = opts.worker_count();
    let live: Arc<[Live]> = (0..n).map(|_| Live::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();

    let mut handles = Vec::with_capacity(n);
    for index in 0..n {
        let ctx = WorkerCtx {
            index,
            cpu: opts.cpus.get(index).copied(),
            opts: opts.clone(),
            workload: workload.clone(),
            live: live.clone(),
            stop: stop.clone(),
            start,
        };
        let spawned = thread::Builder::new()
            .name(format!("loadtest-{index}"))
            .spawn(move || -> Result<WorkerStats, Error> {
                if let Some(cpu) = ctx.cpu {
                    worker::pin_to_cpu(cpu)?;
                }
                let stop = ctx.stop.clone();
                let r = match ctx.opts.mode {
                    Mode::Udp => udp_driver::run(ctx),
                    Mode::Http => http_driver::run(ctx),
                };
                if r.is_err() {
                    // One worker failing spoils the run: end the others now.
                    stop.store(true, Ordering::Relaxed);
                }
                r
            });
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for h in handles {
                    let _ = h.join();
                }
                return Err(Error::Io("spawn worker".into(), e));
            }
        }
    }

    monitor(&opts, &live, &stop, start, &handles);

    let mut total: Option<WorkerStats> = None;
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => match total.as_mut() {
                Some(t) => t.merge(&s),
                None => total = Some(s),
            },
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(Error::Worker("worker thread panicked".into()));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let total = total.ok_or_else(|| Error::Worker("no worker".into()))?;
    Ok(Report::build(&opts, &total))
}

/// Sleeps until the run ends, printing a progress line every second.
fn monitor(
    opts: &Options,
    live: &[Live],
    stop: &AtomicBool,
    start: Instant,
    handles: &[thread::JoinHandle<Result<WorkerStats, Error>>],
) {
    let total = opts.warmup + opts.duration;
    let mut last = LiveTotals::default();
    let mut tick = 1u32;
    loop {
        let next = Duration::from_secs(u64::from(tick)).min(total);
        let now = start.elapsed();
        if now < next {
            thread::sleep((next - now).min(Duration::from_millis(100)));
        }
        if handles.iter().all(|h| h.is_finished()) || stop.load(Ordering::Relaxed) {
            return;
        }
        if start.elapsed() < next {
            continue;
        }
        if opts.progress {
            let mut cur = LiveTotals::default();
            for l in live {
                cur.add(&l.load());
            }
            let phase = if next <= opts.warmup { " warmup" } else { "" };
            let _ = writeln!(
                std::io::stderr(),
                "[{:>4}s{phase}] {:>9} resp/s  {:>9} sent/s  errors {}  timeouts {}",
                tick,
                cur.responses.saturating_sub(last.responses),
                cur.sent.saturating_sub(last.sent),
                cur.errors.saturating_sub(last.errors),
                cur.timeouts.saturating_sub(last.timeouts),
            );
            last = cur;
        }
        if next >= total {
            return;
        }
        tick += 1;
    }
}
