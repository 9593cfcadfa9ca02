//! Runs the generator in-process for about two seconds against tiny
//! responders on loopback threads: a correct one must give responses and
//! no errors, broken ones must give errors.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use shoal_loadtest::{run, Mix, Options, Report};

/// How a test responder misbehaves.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Answers with the transaction id plus one.
    WrongTid,
    /// Answers announces with more peers than asked for.
    TooManyPeers,
}

const CONNECTION_ID: [u8; 8] = [0xc0, 0xff, 0xee, 0, 1, 2, 3, 4];

struct Responder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Requests that did not carry the connection id handed out.
    bad_connection_ids: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Responder {
    /// A BEP 15 responder on a loopback thread; stops when dropped.
    fn udp(fault: Fault) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let bad = Arc::new(AtomicU64::new(0));
        let (stop2, bad2) = (stop.clone(), bad.clone());
        let handle = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut out = Vec::with_capacity(2048);
            while !stop2.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let p = &buf[..len];
                if len < 16 {
                    continue;
                }
                let action = u32::from_be_bytes(p[8..12].try_into().unwrap());
                let mut tid = u32::from_be_bytes(p[12..16].try_into().unwrap());
                if fault == Fault::WrongTid {
                    tid = tid.wrapping_add(1);
                }
                out.clear();
                out.extend_from_slice(&action.to_be_bytes());
                out.extend_from_slice(&tid.to_be_bytes());
                if action != 0 && p[0..8] != CONNECTION_ID {
                    bad2.fetch_add(1, Ordering::Relaxed);
                }
                match action {
                    0 => out.extend_from_slice(&CONNECTION_ID),
                    1 if len >= 98 => {
                        let numwant = u32::from_be_bytes(p[92..96].try_into().unwrap());
                        let peers = if fault == Fault::TooManyPeers {
                            numwant + 1
                        } else {
                            numwant.min(3)
                        };
                        out.extend_from_slice(&[0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2]);
                        for i in 0..peers {
                            out.extend_from_slice(&[127, 0, 0, 1, 0x1a, i as u8]);
                        }
                    }
                    2 => {
                        let n = (len - 16) / 20;
                        out.resize(8 + 12 * n, 0);
                    }
                    _ => continue,
                }
                let _ = socket.send_to(&out, from);
            }
        });
        Responder {
            addr,
            stop,
            bad_connection_ids: bad,
            handle: Some(handle),
        }
    }

    /// An HTTP responder answering every request in order, over keep-alive
    /// connections, or closing each after one answer (`Connection: close`).
    fn http(close_each: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = thread::spawn(move || {
            let mut conns = Vec::new();
            let announce = b"d8:completei1e10:incompletei2e8:intervali1800e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x01\x1a\xe26:peers60:e";
            let scrape = b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei1e10:downloadedi0e10:incompletei0eeee";
            let mut buf = vec![0u8; 64 * 1024];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((s, _)) = listener.accept() {
                    s.set_nonblocking(true).unwrap();
                    conns.push((s, Vec::<u8>::new()));
                }
                let mut idle = true;
                conns.retain_mut(|(s, pending)| {
                    match s.read(&mut buf) {
                        Ok(0) => return false,
                        Ok(n) => {
                            idle = false;
                            pending.extend_from_slice(&buf[..n]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return false,
                    }
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let body: &[u8] = if pending.starts_with(b"GET /scrape") {
                            scrape
                        } else {
                            announce
                        };
                        pending.drain(..end + 4);
                        let close = if close_each {
                            "Connection: close\r\n"
                        } else {
                            ""
                        };
                        let head = format!(
                            "HTTP/1.1 200 OK\r\n{close}Content-Length: {}\r\n\r\n",
                            body.len()
                        );
                        let mut resp = head.into_bytes();
                        resp.extend_from_slice(body);
                        // Tiny answers on loopback: a blocking write is fine.
                        s.set_nonblocking(false).unwrap();
                        let ok = s.write_all(&resp).is_ok();
                        s.set_nonblocking(true).unwrap();
                        if !ok || close_each {
                            return false;
                        }
                    }
                    true
                });
                if idle {
                    thread::sleep(Duration::from_micros(200));
                }
            }
        });
        Responder {
            addr,
            stop,
            bad_connection_ids: Arc::new(AtomicU64::new(0)),
            handle: Some(handle),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn short(opts: Options) -> Report {
    let opts = opts
        .duration(Duration::from_secs(2))
        .sockets(2)
        .inflight(8)
        .timeout(Duration::from_millis(500));
    run(&opts).expect("run")
}

#[test]
fn udp_correct_responder_gives_responses_and_no_errors() {
    let r = Responder::udp(Fault::None);
    let report = short(Options::udp(r.addr).mix(Mix {
        connect: 1,
        announce: 20,
        scrape: 2,
    }));
    assert!(report.responses > 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(
        report.by_action.announce > 0
            && report.by_action.scrape > 0
            && report.by_action.connect > 0
    );
    assert_eq!(report.per_interval.iter().sum::<u64>(), report.responses);
    assert_eq!(report.per_interval.len(), 2);
    assert!(report.latency_us.p50 > 0 && report.latency_us.max >= report.latency_us.p99);
    assert!(report.peers_per_announce > 2.9 && report.peers_per_announce < 3.1);
    assert_eq!(
        r.bad_connection_ids.load(Ordering::Relaxed),
        0,
        "requests with a wrong connection id"
    );
}

#[test]
fn udp_without_gso_and_with_open_loop_also_work() {
    let r = Responder::udp(Fault::None);
    let mut opts = Options::udp(r.addr).rate(Some(2000.0));
    opts.gso = false;
    let report = short(opts);
    assert_eq!(report.errors, 0, "{report:?}");
    // 2 s at 2000/s, give or take the start.
    assert!(
        report.requests_sent > 3000 && report.requests_sent < 4500,
        "{report:?}"
    );
    assert!(report.responses > 3000, "{report:?}");
}

#[test]
fn udp_wrong_transaction_ids_are_errors() {
    let r = Responder::udp(Fault::WrongTid);
    let report = short(Options::udp(r.addr));
    assert!(report.errors > 0, "{report:?}");
    assert!(
        report.error_kinds.contains_key("unknown_transaction"),
        "{report:?}"
    );
    assert_eq!(report.responses, 0, "{report:?}");
}

#[test]
fn udp_too_many_peers_are_errors() {
    let r = Responder::udp(Fault::TooManyPeers);
    let report = short(Options::udp(r.addr).numwant(10));
    assert!(
        report
            .error_kinds
            .get("too_many_peers")
            .copied()
            .unwrap_or(0)
            > 0,
        "{report:?}"
    );
    assert_eq!(report.by_action.announce, 0, "{report:?}");
}

#[test]
fn udp_silent_server_gives_timeouts_not_responses() {
    // Bound but never answering.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let opts = Options::udp(silent.local_addr().unwrap())
        .duration(Duration::from_millis(1500))
        .sockets(1)
        .inflight(4)
        .timeout(Duration::from_millis(200));
    let report = run(&opts).unwrap();
    assert_eq!(report.responses, 0);
    assert!(report.timeouts > 0, "{report:?}");
}

#[test]
fn http_correct_responder_gives_responses_and_no_errors() {
    let r = Responder::http(false);
    let report = short(Options::http(r.addr).mix(Mix {
        connect: 0,
        announce: 10,
        scrape: 1,
    }));
    assert!(report.responses > 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(
        report.by_action.scrape > 0 && report.by_action.announce > 0,
        "{report:?}"
    );
    assert_eq!(report.by_action.connect, 0);
}

#[test]
fn http_too_many_peers_are_errors() {
    let r = Responder::http(false);
    let report = short(Options::http(r.addr).numwant(1).mix(Mix {
        connect: 0,
        announce: 1,
        scrape: 0,
    }));
    assert!(
        report
            .error_kinds
            .get("too_many_peers")
            .copied()
            .unwrap_or(0)
            > 0,
        "{report:?}"
    );
    assert_eq!(report.responses, 0, "{report:?}");
}

#[test]
fn http_server_closing_after_each_answer_is_not_an_error() {
    let r = Responder::http(true);
    // Pipelined requests past a `Connection: close` are sent again on the
    // next connection, not counted as errors.
    let report = short(Options::http(r.addr).inflight(3));
    assert!(report.responses > 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
}
