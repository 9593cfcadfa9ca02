//! What every worker thread shares, whatever the protocol: its clock and
//! the warmup / measured / end schedule, CPU pinning, the stop flag.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::options::Options;
use crate::stats::{Live, LiveTotals, WorkerStats};
use crate::workload::Workload;
use crate::Error;

/// Handed to each worker thread.
pub struct WorkerCtx {
    pub index: usize,
    pub cpu: Option<usize>,
    pub opts: Arc<Options>,
    pub workload: Arc<Workload>,
    pub live: Arc<[Live]>,
    pub stop: Arc<AtomicBool>,
    pub start: Instant,
}

impl WorkerCtx {
    pub fn live(&self) -> &Live {
        &self.live[self.index]
    }
}

/// Times in nanoseconds since the run's start, so the hot loop compares
/// integers.
pub struct Phase {
    start: Instant,
    pub measure_ns: u64,
    pub end_ns: u64,
    intervals: usize,
    measuring: bool,
    /// What was counted during warmup, kept for the progress totals.
    pub base: LiveTotals,
}

impl Phase {
    pub fn new(ctx: &WorkerCtx) -> Self {
        let measure_ns = ctx.opts.warmup.as_nanos() as u64;
        let end_ns = measure_ns + ctx.opts.duration.as_nanos() as u64;
        Phase {
            start: ctx.start,
            measure_ns,
            end_ns,
            intervals: intervals(&ctx.opts),
            measuring: measure_ns == 0,
            base: LiveTotals::default(),
        }
    }

    pub fn stats(&self) -> WorkerStats {
        WorkerStats::new(self.intervals)
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Index of the 1 s interval `now` falls in; `usize::MAX` in warmup,
    /// which the per-interval counters ignore. Answers read just past the
    /// end still belong to the last interval, so the intervals add up to
    /// the total.
    #[inline]
    pub fn interval(&self, now: u64) -> usize {
        match now.checked_sub(self.measure_ns) {
            Some(d) => ((d / 1_000_000_000) as usize).min(self.intervals.saturating_sub(1)),
            None => usize::MAX,
        }
    }

    /// At the end of warmup, starts the measured counters from zero.
    #[inline]
    pub fn check_warmup(&mut self, now: u64, stats: &mut WorkerStats) {
        if !self.measuring && now >= self.measure_ns {
            self.measuring = true;
            self.base.add(&LiveTotals::of(stats));
            *stats = self.stats();
        }
    }
}

/// Number of 1 s intervals in the measured period (the last may be short).
pub fn intervals(opts: &Options) -> usize {
    opts.duration.as_nanos().div_ceil(1_000_000_000) as usize
}

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> Result<(), Error> {
    // SAFETY: cpu_set_t is plain data; CPU_SET is bounds-checked by
    // validate() (cpu < CPU_SETSIZE) and sched_setaffinity only reads it.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(Error::Io(
            format!("pin to cpu {cpu}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// errno of the last failed libc call.
#[inline]
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
