//! The metrics endpoint after real UDP and HTTP traffic: `/metrics`
//! parses (and passes `promtool check metrics` where Prometheus is
//! installed; CI requires it), its counters match what was sent, `/stats`
//! agrees, and `/health` turns 503 while a shard is stalled.

mod common;

use common::http::{announce_target, encode, HttpClient};
use common::*;
use shoal::config;
use shoal::middleware::{AnnounceContext, Hook, Refusal};
use shoal::server::Server;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One GET on a fresh connection: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: metrics\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Samples by metric name and sorted labels, values summed over shards
/// unless `shard` is one of the labels asked for.
struct Metrics {
    text: String,
    samples: Vec<prometheus_parse::Sample>,
}

impl Metrics {
    fn scrape(addr: SocketAddr) -> Metrics {
        let (status, text) = get(addr, "/metrics");
        assert_eq!(status, 200);
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
        Metrics {
            text,
            samples: parsed.samples,
        }
    }

    /// The sum of the samples of `metric` whose labels include `labels`.
    fn sum(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    }

    /// Every counter's value, keyed by name and labels (shards summed).
    fn counters(&self) -> HashMap<String, f64> {
        let mut all = HashMap::new();
        for s in &self.samples {
            if let prometheus_parse::Value::Counter(v) = s.value {
                let mut labels: Vec<String> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "shard")
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                labels.sort();
                *all.entry(format!("{}{{{}}}", s.metric, labels.join(",")))
                    .or_insert(0.0) += v;
            }
        }
        all
    }
}

/// `promtool check metrics` on the exposition, when Prometheus's tool is
/// installed; CI installs it and sets SHOAL_REQUIRE_PROMTOOL=1.
fn promtool_check(text: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("SHOAL_REQUIRE_PROMTOOL").is_none(),
                "promtool is required here but cannot run: {e}"
            );
            eprintln!("promtool not installed ({e}): only the parser crate checked /metrics");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json_at<'a>(v: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    path.split('.').fold(v, |v, key| &v[key])
}

#[test]
fn counters_match_the_traffic_and_stats_agree() {
    let t = Tracker::start(&["metrics.latency_histograms=true"]);
    let before = Metrics::scrape(t.metrics).counters();

    // UDP over IPv4: a connect, 20 announces, a scrape, and one request
    // that is answered with an error (port 0).
    let c4 = Client::connected(t.v4);
    let hashes: Vec<[u8; 20]> = (0..20).map(|_| random_hash()).collect();
    for (i, h) in hashes.iter().enumerate() {
        c4.announce(&Announce::new(*h, 2000 + i as u16));
    }
    assert_eq!(c4.scrape(&hashes[..3]).len(), 3);
    c4.send(&c4.announce_packet(&Announce::new(random_hash(), 0), 7));
    let error = c4.recv().expect("an error answer");
    assert_eq!(be32(&error[0..4]), 3);
    // Dropped: a bad connection id, and a datagram too short to parse.
    let mut forged = Client::new(t.v4);
    forged.connection_id = 0x1234_5678;
    forged.send(&forged.announce_packet(&Announce::new(random_hash(), 5), 1));
    forged.send(b"short");
    // UDP over IPv6: a connect and 5 announces.
    let c6 = Client::connected(t.v6);
    for i in 0..5 {
        c6.announce(&Announce::new(random_hash(), 3000 + i));
    }
    // HTTP over IPv4, one keep-alive connection: 10 announces, one
    // refused (no peer_id), one unknown path, one scrape.
    let mut h = HttpClient::connect(t.v4);
    for i in 0..10u16 {
        let r = h.get(&announce_target(&random_hash(), &[7; 20], 4000 + i, 5, ""));
        assert_eq!(r.status, 200);
    }
    let bad = h.get(&format!(
        "/announce?info_hash={}&port=1&uploaded=0&downloaded=0&left=0",
        encode(&random_hash())
    ));
    assert!(bad.failure().contains("peer_id"));
    assert_eq!(h.get("/nope").status, 404);
    let scrape = h.get(&format!(
        "/scrape?info_hash={}&info_hash={}",
        encode(&hashes[0]),
        encode(&hashes[1])
    ));
    assert_eq!(scrape.status, 200);
    // Let the dropped datagrams be read before looking.
    std::thread::sleep(Duration::from_millis(200));

    let after = Metrics::scrape(t.metrics);
    promtool_check(&after.text);
    let now = after.counters();
    let delta =
        |key: &str| now.get(key).copied().unwrap_or(-1.0) - before.get(key).copied().unwrap_or(0.0);
    let expected: &[(&str, f64)] = &[
        (
            "shoal_requests_total{action=connect,family=ipv4,protocol=udp}",
            1.0,
        ),
        (
            "shoal_requests_total{action=connect,family=ipv6,protocol=udp}",
            1.0,
        ),
        (
            "shoal_requests_total{action=announce,family=ipv4,protocol=udp}",
            20.0,
        ),
        (
            "shoal_requests_total{action=announce,family=ipv6,protocol=udp}",
            5.0,
        ),
        (
            "shoal_requests_total{action=scrape,family=ipv4,protocol=udp}",
            1.0,
        ),
        (
            "shoal_requests_total{action=invalid,family=ipv4,protocol=udp}",
            1.0,
        ),
        (
            "shoal_responses_total{action=announce,family=ipv4,protocol=udp,result=ok}",
            20.0,
        ),
        (
            "shoal_responses_total{action=announce,family=ipv6,protocol=udp,result=ok}",
            5.0,
        ),
        (
            "shoal_responses_total{action=scrape,family=ipv4,protocol=udp,result=ok}",
            1.0,
        ),
        (
            "shoal_responses_total{action=invalid,family=ipv4,protocol=udp,result=error}",
            1.0,
        ),
        (
            "shoal_requests_total{action=announce,family=ipv4,protocol=http}",
            11.0,
        ),
        (
            "shoal_responses_total{action=announce,family=ipv4,protocol=http,result=ok}",
            10.0,
        ),
        (
            "shoal_responses_total{action=announce,family=ipv4,protocol=http,result=error}",
            1.0,
        ),
        (
            "shoal_responses_total{action=scrape,family=ipv4,protocol=http,result=ok}",
            1.0,
        ),
        (
            "shoal_responses_total{action=invalid,family=ipv4,protocol=http,result=error}",
            1.0,
        ),
        ("shoal_udp_dropped_total{reason=bad_connection_id}", 1.0),
        ("shoal_udp_dropped_total{reason=malformed}", 1.0),
        ("shoal_udp_dropped_total{reason=owner_saturated}", 0.0),
        ("shoal_http_connections_accepted_total{}", 1.0),
        ("shoal_http_connections_refused_total{}", 0.0),
        ("shoal_http_connections_evicted_total{}", 0.0),
    ];
    for (key, want) in expected {
        assert_eq!(delta(key), *want, "{key}");
    }
    // Kernel steering keeps UDP announces on their owner; HTTP announces
    // land wherever the connection did.
    assert_eq!(delta("shoal_forwarded_total{kind=udp_announce}"), 0.0);
    assert!(delta("shoal_forwarded_total{kind=http_announce}") <= 11.0);
    assert!(delta("shoal_udp_datagrams_received_total{}") >= 30.0);

    // Gauges: 35 torrents with one leecher each, 30 over IPv4.
    assert_eq!(after.sum("shoal_torrents", &[]), 35.0);
    assert_eq!(after.sum("shoal_peers", &[("family", "ipv4")]), 30.0);
    assert_eq!(after.sum("shoal_leechers", &[("family", "ipv6")]), 5.0);
    assert_eq!(after.sum("shoal_seeders", &[]), 0.0);
    assert_eq!(after.sum("shoal_shard_up", &[]), 2.0);
    // Latency histograms, on in this test: one observation per answer.
    let latency = |protocol, action| {
        after.sum(
            "shoal_request_duration_seconds",
            &[("protocol", protocol), ("action", action)],
        )
    };
    assert_eq!(latency("udp", "announce"), 25.0);
    assert_eq!(latency("http", "announce"), 11.0);
    assert_eq!(latency("http", "scrape"), 1.0);
    assert!(after.sum("process_resident_memory_bytes", &[]) > 1e6);
    assert!(after.sum("process_open_fds", &[]) > 5.0);

    // /stats: the same totals (nothing was sent in between).
    let (status, stats) = get(t.metrics, "/stats");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("JSON");
    let totals = &stats["totals"];
    let metric_total = |name: &str| -> f64 {
        now.iter()
            .filter(|(k, _)| k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(
        totals["requests_total"].as_f64().unwrap(),
        metric_total("shoal_requests_total")
    );
    assert_eq!(
        totals["responses_total"].as_f64().unwrap(),
        metric_total("shoal_responses_total")
    );
    assert_eq!(
        json_at(totals, "requests.udp.announce.ipv4").as_f64(),
        now.get("shoal_requests_total{action=announce,family=ipv4,protocol=udp}")
            .copied()
    );
    assert_eq!(totals["torrents"], 35);
    assert_eq!(totals["peers"], 35);
    assert_eq!(json_at(totals, "latency_us.udp.announce.count"), 25);
    let shards = stats["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    assert!(shards.iter().all(|s| s["up"] == true));
    let per_shard: u64 = shards.iter().map(|s| s["torrents"].as_u64().unwrap()).sum();
    assert_eq!(per_shard, 35);
    assert_eq!(stats["shards_up"], 2);

    dashboards_use_only_exported_metrics(&after.text);
    bad_requests_get_errors_and_the_endpoint_keeps_serving(t.metrics);

    assert_eq!(get(t.metrics, "/health"), (200, "ok\n".to_string()));
    assert_eq!(get(t.metrics, "/elsewhere").0, 404);
    assert_eq!(t.stop().code(), Some(0));
}

/// Blocks its shard's thread for a while on an announce from port 9999:
/// a shard stuck in a slow hook, a long GC-like pause, a livelock.
struct Stall;

impl Hook for Stall {
    fn name(&self) -> &'static str {
        "stall"
    }

    fn before_announce(&mut self, ctx: &mut AnnounceContext) -> Result<(), Refusal> {
        if ctx.announce.port == 9999 {
            std::thread::sleep(Duration::from_millis(2500));
        }
        Ok(())
    }
}

#[test]
fn health_is_503_while_a_shard_is_stalled() {
    let udp_port = free_port();
    let metrics_port = free_port();
    let config = config::from_yaml(
        "",
        &[
            format!("runtime.cores={}", test_cores()),
            format!("udp.listen=[\"127.0.0.1:{udp_port}\"]"),
            "http.listen=[]".into(),
            format!("metrics.listen=[\"127.0.0.1:{metrics_port}\"]"),
            "metrics.shard_deadline=300ms".into(),
        ],
    )
    .unwrap();
    let running = Server::new(config)
        .with_hooks(Arc::new(|_shard| vec![Box::new(Stall) as Box<dyn Hook>]))
        .start()
        .unwrap();
    let metrics = running.metrics_addrs[0];
    assert_eq!(get(metrics, "/health").0, 200);

    let c = Client::connected(running.udp_addrs[0]);
    c.send(&c.announce_packet(&Announce::new(random_hash(), 9999), 1));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, body) = get(metrics, "/health");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("did not answer within 300ms"), "{body}");
    // The endpoint still answers, within about the deadline.
    assert!(started.elapsed() < Duration::from_secs(2));
    let during = Metrics::scrape(metrics);
    assert_eq!(during.sum("shoal_shard_up", &[]), 1.0);

    // The stall ends; the shard answers again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(metrics, "/health").0 != 200 {
        assert!(Instant::now() < deadline, "the shard never recovered");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        c.recv().is_some(),
        "the stalled announce is answered after all"
    );

    // A client trickling its request a byte at a time cannot hold the
    // listener past the 2 s request deadline.
    let trickler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(metrics).unwrap();
        for b in b"GET /metric" {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    assert_eq!(get(metrics, "/health").0, 200);
    let waited = asked.elapsed();
    assert!(waited < Duration::from_millis(2900), "{waited:?}");
    trickler.join().unwrap();
    running.shutdown();
    running.join().unwrap();
    // The listener is gone with the server.
    assert!(TcpStream::connect(metrics).is_err());
}

/// Every metric the Grafana dashboard and the alert rules in dist/ query
/// is one Shoal exports (a renamed metric would leave a panel empty).
fn dashboards_use_only_exported_metrics(exposition: &str) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}grafana-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(queries.len() >= 10);
    queries.push(std::fs::read_to_string(format!("{dir}alerts.yml")).unwrap());
    let exported: std::collections::HashSet<&str> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for query in &queries {
        let names = query
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("shoal_") || w.starts_with("process_"));
        for name in names {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            assert!(
                exported.contains(family),
                "{name} (in `{query}`) is not exported"
            );
        }
    }
}

/// Garbage, oversized and non-GET requests to the metrics listener get an
/// error status, and it goes on serving.
fn bad_requests_get_errors_and_the_endpoint_keeps_serving(addr: SocketAddr) {
    let raw = |bytes: &[u8]| -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(bytes);
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    assert!(raw(b"\x00\xff garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").starts_with("HTTP/1.1 405"));
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.resize(20_000, b'a');
    assert!(raw(&huge).starts_with("HTTP/1.1 431"));
    let head = raw(b"HEAD /health HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    // A client that connects and says nothing is dropped, not waited on.
    let silent = TcpStream::connect(addr).unwrap();
    assert_eq!(get(addr, "/health").0, 200);
    drop(silent);
    assert_eq!(get(addr, "/metrics?x=1").0, 200);
}
