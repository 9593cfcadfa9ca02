//! Starts the real `shoal` binary on loopback and speaks BEP 15 to it.
#![allow(dead_code)]

pub mod bencode;
pub mod http;
pub mod mariadb;
pub mod postgres;
pub mod redis;
pub mod sqlserver;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;

/// A port free for UDP and TCP on both loopback families (bound, then
/// released).
pub fn free_port() -> u16 {
    loop {
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let free = UdpSocket::bind(("::1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("::1", port)).is_ok();
        if free {
            return port;
        }
    }
}

pub struct Tracker {
    child: Child,
    pub v4: SocketAddr,
    pub v6: SocketAddr,
    /// The metrics listener (loopback, its own port).
    pub metrics: SocketAddr,
}

impl Tracker {
    /// Two shards (CPUs 0 and 1), UDP and HTTP on 127.0.0.1 and [::1].
    /// A port found free can be taken (by another test's client socket)
    /// before the server binds it; the server then exits with a bind
    /// error, and we try again on another port.
    pub fn start(extra: &[&str]) -> Tracker {
        Self::start_with(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml")),
            extra,
        )
    }

    /// As `start`, with the config file `config` (for reload tests, which
    /// change it).
    pub fn start_with(config: &std::path::Path, extra: &[&str]) -> Tracker {
        Self::start_with_env(config, extra, &[])
    }

    /// As `start_with`, with environment variables for the server.
    pub fn start_with_env(
        config: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Tracker {
        for _ in 0..5 {
            let port = free_port();
            let v4: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
            let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoal"));
            cmd.arg("--config")
                .arg(config)
                .arg("--set")
                .arg(format!("runtime.cores={}", test_cores()))
                .arg("--set")
                .arg(format!("udp.listen=[\"{v4}\", \"{v6}\"]"))
                .arg("--set")
                .arg(format!("http.listen=[\"{v4}\", \"{v6}\"]"))
                .arg("--set")
                .arg(format!("metrics.listen=[\"{metrics}\"]"))
                .arg("--set")
                .arg("log.level=warn");
            for e in extra {
                cmd.arg("--set").arg(e);
            }
            cmd.envs(env.iter().copied());
            let child = cmd.stdin(Stdio::null()).spawn().expect("start shoal");
            let mut tracker = Tracker {
                child,
                v4,
                v6,
                metrics,
            };
            if tracker.wait_ready() {
                return tracker;
            }
        }
        panic!("shoal did not start in 5 attempts");
    }

    /// Whether the server answers a connect within 20 s (false at once if
    /// it exited).
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            let mut c = Client::new(self.v4);
            c.sock
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            if c.try_connect().is_some() {
                return true;
            }
        }
        panic!("shoal did not answer within 20s");
    }

    /// A sample without labels from /metrics (panics when it is missing).
    pub fn metric(&self, name: &str) -> f64 {
        let text = String::from_utf8(http::HttpClient::connect(self.metrics).get("/metrics").body)
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status (graceful shutdown).
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "shoal did not stop within 10s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two shards on this machine's first two CPUs; both on CPU 0 when the
/// machine has one (the shards still run as two executors).
pub fn test_cores() -> String {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n >= 2 {
        "[0, 1]".into()
    } else {
        "[0, 0]".into()
    }
}

pub struct Client {
    pub sock: UdpSocket,
    pub target: SocketAddr,
    pub connection_id: u64,
}

#[derive(Debug)]
pub struct AnnounceReply {
    pub interval: u32,
    pub leechers: u32,
    pub seeders: u32,
    /// Raw peer entries: 6 bytes (IPv4) or 18 bytes (IPv6) each.
    pub peers: Vec<Vec<u8>>,
}

pub struct Announce {
    pub info_hash: [u8; 20],
    pub port: u16,
    pub left: u64,
    pub event: u32,
    pub numwant: i32,
}

impl Announce {
    pub fn new(info_hash: [u8; 20], port: u16) -> Self {
        Self {
            info_hash,
            port,
            left: 100,
            event: 2,
            numwant: -1,
        }
    }

    pub fn seeder(mut self) -> Self {
        self.left = 0;
        self
    }

    pub fn event(mut self, event: u32) -> Self {
        self.event = event;
        self
    }

    pub fn numwant(mut self, n: i32) -> Self {
        self.numwant = n;
        self
    }
}

impl Client {
    pub fn new(target: SocketAddr) -> Client {
        let local = if target.is_ipv6() { "::1" } else { "127.0.0.1" };
        Client::from_address(local.parse().unwrap(), target)
    }

    /// A client sending from `local` (any loopback address: 127.0.0.0/8
    /// all reach the server).
    pub fn from_address(local: std::net::IpAddr, target: SocketAddr) -> Client {
        let sock = UdpSocket::bind(SocketAddr::new(local, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        Client {
            sock,
            target,
            connection_id: 0,
        }
    }

    pub fn connected(target: SocketAddr) -> Client {
        let mut c = Client::new(target);
        c.connect();
        c
    }

    pub fn send(&self, packet: &[u8]) {
        self.sock.send_to(packet, self.target).unwrap();
    }

    /// The next datagram, or `None` after the read timeout.
    pub fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 4096];
        match self.sock.recv_from(&mut buf) {
            Ok((n, _)) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }

    fn try_connect(&mut self) -> Option<()> {
        let tid: u32 = fastrand::u32(..);
        let mut p = PROTOCOL_ID.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        self.send(&p);
        let r = self.recv()?;
        assert_eq!(r.len(), 16);
        assert_eq!(be32(&r[0..4]), 0);
        assert_eq!(be32(&r[4..8]), tid);
        self.connection_id = u64::from_be_bytes(r[8..16].try_into().unwrap());
        Some(())
    }

    pub fn connect(&mut self) {
        self.try_connect().expect("connect answered");
    }

    /// Connects, retrying until `deadline`; whether it got through.
    pub fn connect_by(&mut self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if self.try_connect().is_some() {
                return true;
            }
        }
        false
    }

    pub fn announce_packet(&self, a: &Announce, tid: u32) -> Vec<u8> {
        let mut p = self.connection_id.to_be_bytes().to_vec();
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        p.extend_from_slice(&a.info_hash);
        let mut peer_id = [b'-'; 20];
        peer_id[..2].copy_from_slice(&a.port.to_be_bytes());
        p.extend_from_slice(&peer_id);
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&a.left.to_be_bytes());
        p.extend_from_slice(&0u64.to_be_bytes());
        p.extend_from_slice(&a.event.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&a.numwant.to_be_bytes());
        p.extend_from_slice(&a.port.to_be_bytes());
        p
    }

    pub fn announce(&self, a: &Announce) -> AnnounceReply {
        let tid = fastrand::u32(..);
        self.send(&self.announce_packet(a, tid));
        let r = self.recv().expect("announce answered");
        assert_eq!(be32(&r[0..4]), 1, "action of {r:?}");
        assert_eq!(be32(&r[4..8]), tid);
        let width = if self.target.is_ipv6() { 18 } else { 6 };
        assert_eq!(
            (r.len() - 20) % width,
            0,
            "peer bytes of {} for width {width}",
            r.len()
        );
        AnnounceReply {
            interval: be32(&r[8..12]),
            leechers: be32(&r[12..16]),
            seeders: be32(&r[16..20]),
            peers: r[20..].chunks(width).map(|c| c.to_vec()).collect(),
        }
    }

    pub fn scrape_packet(&self, hashes: &[[u8; 20]], tid: u32) -> Vec<u8> {
        let mut p = self.connection_id.to_be_bytes().to_vec();
        p.extend_from_slice(&2u32.to_be_bytes());
        p.extend_from_slice(&tid.to_be_bytes());
        for h in hashes {
            p.extend_from_slice(h);
        }
        p
    }

    /// (seeders, completed, leechers) per infohash, in order.
    pub fn scrape(&self, hashes: &[[u8; 20]]) -> Vec<(u32, u32, u32)> {
        let tid = fastrand::u32(..);
        self.send(&self.scrape_packet(hashes, tid));
        let r = self.recv().expect("scrape answered");
        assert_eq!(be32(&r[0..4]), 2, "action of {r:?}");
        assert_eq!(be32(&r[4..8]), tid);
        assert_eq!(r.len(), 8 + 12 * hashes.len());
        r[8..]
            .chunks(12)
            .map(|c| (be32(&c[0..4]), be32(&c[4..8]), be32(&c[8..12])))
            .collect()
    }
}

pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b.try_into().unwrap())
}

/// The wire bytes of a loopback IPv4 peer with this port.
pub fn v4_peer(port: u16) -> Vec<u8> {
    let mut p = vec![127, 0, 0, 1];
    p.extend_from_slice(&port.to_be_bytes());
    p
}

pub fn random_hash() -> [u8; 20] {
    let mut h = [0u8; 20];
    fastrand::fill(&mut h);
    h
}
