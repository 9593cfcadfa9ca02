//! The process's own figures, read from /proc (Linux) at each scrape.

use std::time::SystemTime;

#[derive(Clone, Copy, Debug, Default)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
}

impl Process {
    /// Whatever cannot be read stays 0.
    pub fn read(started: SystemTime) -> Process {
        let mut p = Process {
            start_time_seconds: started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            ..Process::default()
        };
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name (which may hold spaces), whose
            // ")" is the last one: state is field 3, utime 14, stime 15,
            // vsize 23, rss 24 (proc(5)).
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let field = |n: usize| -> u64 {
                    fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0)
                };
                // SAFETY: sysconf only reads a system constant.
                let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
                // SAFETY: as above.
                let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
                p.cpu_seconds = (field(14) + field(15)) as f64 / ticks;
                p.virtual_bytes = field(23);
                p.resident_bytes = field(24) * page;
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            p.open_fds = dir.count() as u64;
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass and nothing else.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            p.max_fds = limit.rlim_cur;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let p = Process::read(SystemTime::now());
        assert!(p.resident_bytes > 0);
        assert!(p.virtual_bytes >= p.resident_bytes);
        assert!(p.open_fds >= 3);
        assert!(p.max_fds >= p.open_fds);
        assert!(p.start_time_seconds > 1.6e9);
    }
}
