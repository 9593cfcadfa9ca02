//! A heartbeat for the shards: a watchdog thread sends each shard thread
//! a no-op signal every `PERIOD`, so an executor parked in io_uring_enter
//! always returns to its loop (EINTR) at least that often.
//!
//! Why: on this VM a shard was once found parked in io_uring_enter with
//! its 100 ms timer never firing, deaf to shutdown until a ptrace attach
//! interrupted the wait (glommio has open reports of timers hanging in
//! VMs, and io_uring waits have been seen wedged with completions
//! pending). The signal bounds any such stall to one period. The shards'
//! own system calls are non-blocking (MSG_DONTWAIT), so they never see
//! the signal as EINTR; only the waits do, which glommio retries.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const PERIOD: Duration = Duration::from_millis(100);

fn signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

extern "C" fn ignore(_: libc::c_int) {}

/// Installs the no-op handler (without SA_RESTART, so waits return EINTR).
pub fn install() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction with a handler that does nothing (it is
    // async-signal-safe) and an empty mask is a valid argument.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal(), &action, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The kernel thread ids of the shards, filled in as they start.
#[derive(Default)]
pub struct ShardThreads(Vec<AtomicI32>);

impl ShardThreads {
    pub fn new(shards: usize) -> Self {
        Self((0..shards).map(|_| AtomicI32::new(0)).collect())
    }

    /// Called on shard `id`'s own thread.
    pub fn register(&self, id: usize) {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.0[id].store(tid, Ordering::Relaxed);
    }

    pub fn unregister(&self, id: usize) {
        self.0[id].store(0, Ordering::Relaxed);
    }
}

/// Signals every registered shard thread each period until `stop`.
pub fn spawn(
    threads: Arc<ShardThreads>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("shoal-heartbeat".into())
        .spawn(move || {
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() };
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(PERIOD);
                for tid in threads.0.iter().map(|t| t.load(Ordering::Relaxed)) {
                    if tid != 0 {
                        // SAFETY: tgkill only reaches threads of this
                        // process (tgid = pid); a thread that has exited
                        // gives ESRCH, which is fine to ignore.
                        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal()) };
                    }
                }
            }
        })
}
