//! The metrics listener: `/metrics` (Prometheus), `/stats` (JSON) and
//! `/health`, on plain threads outside the shards, so that it answers,
//! and says so, when a shard is stuck. One request per connection;
//! requests are served one at a time (scrapers are few; the default
//! address is loopback).

use super::process::Process;
use super::{json, prometheus, Registry};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MAX_REQUEST: usize = 8 << 10;
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle listener looks at the shutdown flag.
const SHUTDOWN_CHECK_MS: i32 = 200;

pub struct Endpoint {
    threads: Vec<JoinHandle<()>>,
    /// The bound addresses, in `metrics.listen` order (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
}

impl Endpoint {
    /// Binds every address (failing the start if one cannot be bound),
    /// then serves each from its own thread until `shutdown`.
    pub fn start(
        listen: &[SocketAddr],
        registry: Arc<Registry>,
        shard_deadline: Duration,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<Endpoint> {
        let mut listeners = Vec::new();
        for addr in listen {
            let listener = TcpListener::bind(addr).map_err(|e| {
                io::Error::new(e.kind(), format!("metrics.listen: cannot bind {addr}: {e}"))
            })?;
            listeners.push(listener);
        }
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for listener in listeners {
            addrs.push(listener.local_addr()?);
            let server = Server {
                registry: registry.clone(),
                shard_deadline,
            };
            let stop = shutdown.clone();
            let spawned = std::thread::Builder::new()
                .name("shoal-metrics".into())
                .spawn(move || server.serve(listener, &stop));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    // Stop the listeners already serving: the start fails.
                    shutdown.store(true, Ordering::Relaxed);
                    Endpoint { threads, addrs }.join();
                    return Err(e);
                }
            }
        }
        Ok(Endpoint { threads, addrs })
    }

    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

struct Server {
    registry: Arc<Registry>,
    shard_deadline: Duration,
}

/// Whether `listener` has a connection waiting (within a short timeout).
fn readable(listener: &TcpListener) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes only the one pollfd we pass.
    unsafe { libc::poll(&mut fd, 1, SHUTDOWN_CHECK_MS) > 0 }
}

impl Server {
    fn serve(&self, listener: TcpListener, shutdown: &AtomicBool) {
        while !shutdown.load(Ordering::Relaxed) {
            if !readable(&listener) {
                continue;
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = self.connection(stream) {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn connection(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        // The whole request must arrive within READ_TIMEOUT, however slowly
        // it trickles: one client must not hold the listener (and /health).
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut buf = vec![0u8; MAX_REQUEST];
        let mut filled = 0;
        let answer = loop {
            if filled == buf.len() {
                break Answer::text(431, "request too large\n");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            stream.set_read_timeout(Some(left))?;
            let n = stream.read(&mut buf[filled..])?;
            if n == 0 {
                return Ok(());
            }
            filled += n;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf[..filled]) {
                Ok(httparse::Status::Partial) => continue,
                Ok(httparse::Status::Complete(_)) => {
                    let method = request.method.unwrap_or("");
                    let path = request.path.unwrap_or("");
                    let mut answer = self.route(method, path);
                    if method == "HEAD" {
                        answer.head_only = true;
                    }
                    break answer;
                }
                Err(_) => break Answer::text(400, "malformed request\n"),
            }
        };
        answer.write(&mut stream)
    }

    fn route(&self, method: &str, target: &str) -> Answer {
        if method != "GET" && method != "HEAD" {
            return Answer::text(405, "only GET and HEAD are served\n");
        }
        let path = target.split('?').next().unwrap_or("");
        match path {
            "/metrics" => {
                let gathered = self.registry.gather(self.shard_deadline);
                let process = Process::read(self.registry.started);
                Answer {
                    status: 200,
                    content_type: prometheus::CONTENT_TYPE,
                    body: prometheus::render(&gathered, &process).into_bytes(),
                    head_only: false,
                }
            }
            "/stats" => {
                let gathered = self.registry.gather(self.shard_deadline);
                let process = Process::read(self.registry.started);
                Answer {
                    status: 200,
                    content_type: "application/json",
                    body: json::render(&gathered, &process).into_bytes(),
                    head_only: false,
                }
            }
            "/health" => {
                let gathered = self.registry.gather(self.shard_deadline);
                let down: Vec<String> = gathered
                    .shards
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !s.up)
                    .map(|(id, _)| id.to_string())
                    .collect();
                if down.is_empty() {
                    Answer::text(200, "ok\n")
                } else {
                    let deadline = humantime::format_duration(self.shard_deadline);
                    Answer::text(
                        503,
                        &format!(
                            "shard {} did not answer within {deadline}\n",
                            down.join(", ")
                        ),
                    )
                }
            }
            "/" => Answer::text(
                200,
                "Shoal metrics: /metrics (Prometheus), /stats (JSON), /health\n",
            ),
            _ => Answer::text(404, "not found: try /metrics, /stats or /health\n"),
        }
    }
}

struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    head_only: bool,
}

impl Answer {
    fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            head_only: false,
        }
    }

    fn write(&self, stream: &mut TcpStream) -> io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            _ => "Service Unavailable",
        };
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        stream.write_all(head.as_bytes())?;
        if !self.head_only {
            stream.write_all(&self.body)?;
        }
        stream.flush()
    }
}
