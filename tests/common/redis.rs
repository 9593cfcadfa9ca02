//! A real redis-server for a test: its own port and a temporary directory,
//! no persistence; stopped (and restartable on the same port) by the test.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    /// Listening on a unix socket (in `dir`) instead of the port.
    unix: bool,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_on(false)
    }

    /// On a unix socket only (`url` is `unix://...`).
    pub fn start_unix() -> RedisServer {
        Self::start_on(true)
    }

    fn start_on(unix: bool) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "shoal-redis-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            port: super::free_port(),
            unix,
            dir,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        if self.unix {
            format!("unix://{}", self.socket().display())
        } else {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.join("redis.sock")
    }

    fn accepts(&self) -> bool {
        if self.unix {
            std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
        } else {
            TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        }
    }

    /// Starts it (again) on its port, and waits until it accepts.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let port = if self.unix { 0 } else { self.port };
        let mut command = Command::new("redis-server");
        if self.unix {
            command.arg("--unixsocket").arg(self.socket());
        }
        let child = command
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server is needed (apt-get install redis-server; .ci/run does): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.accepts() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: an outage, with everything it held lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
