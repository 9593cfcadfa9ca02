//! The Prometheus text exposition format (version 0.0.4) of a gather.
//! Counters per shard (`shard` label; sum them in PromQL), then the
//! process's figures under the standard `process_*` names.

use super::counters::{
    ACTIONS, FAMILIES, FORWARDED, OUTCOMES, PROTOCOLS, SWEEP_BUCKETS, UDP_DROPS,
};
use super::latency::BUCKETS;
use super::process::Process;
use super::{Gathered, ShardFigures};
use std::fmt::{Display, Write};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                // Label values are our own constants and numbers: nothing
                // to escape.
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// One counter or gauge family, one sample per shard (and label set).
    fn per_shard(
        &mut self,
        g: &Gathered,
        name: &str,
        kind: &str,
        help: &str,
        series: impl Fn(&ShardFigures, &mut dyn FnMut(&[(&str, &str)], u64)),
    ) {
        self.family(name, kind, help);
        for (id, s) in g.shards.iter().enumerate() {
            let shard = id.to_string();
            series(&s.figures, &mut |labels, value| {
                let mut all = vec![("shard", shard.as_str())];
                all.extend_from_slice(labels);
                self.sample(name, &all, value);
            });
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], bounds: &[f64], b: Buckets) {
        let bucket = format!("{name}_bucket");
        for (le, count) in bounds.iter().zip(&b.cumulative) {
            let le = le.to_string();
            let mut all = labels.to_vec();
            all.push(("le", &le));
            self.sample(&bucket, &all, count);
        }
        let mut all = labels.to_vec();
        all.push(("le", "+Inf"));
        self.sample(&bucket, &all, b.count);
        self.sample(&format!("{name}_sum"), labels, b.sum);
        self.sample(&format!("{name}_count"), labels, b.count);
    }
}

struct Buckets {
    cumulative: Vec<u64>,
    count: u64,
    sum: f64,
}

/// Every (protocol, action) pair a protocol can carry: HTTP has no connect.
pub(super) fn served_pairs() -> impl Iterator<Item = (usize, usize)> {
    (0..PROTOCOLS.len())
        .flat_map(|p| (0..ACTIONS.len()).map(move |a| (p, a)))
        .filter(|&(p, a)| !(PROTOCOLS[p] == "http" && ACTIONS[a] == "connect"))
}

pub fn render(g: &Gathered, process: &Process) -> String {
    let mut e = Exposition {
        text: String::with_capacity(16 << 10),
    };
    e.family("shoal_build_info", "gauge", "Shoal's version.");
    e.sample(
        "shoal_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    e.family(
        "shoal_shard_up",
        "gauge",
        "1 if the shard answered this scrape within metrics.shard_deadline; 0 shows its last figures.",
    );
    for (id, s) in g.shards.iter().enumerate() {
        e.sample("shoal_shard_up", &[("shard", &id.to_string())], s.up as u8);
    }
    e.per_shard(
        g,
        "shoal_requests_total",
        "counter",
        "Requests understood and served (not dropped), by the shard that read them.",
        |f, out| {
            for (p, a) in served_pairs() {
                for (fam, family) in FAMILIES.iter().enumerate() {
                    let labels = [
                        ("protocol", PROTOCOLS[p]),
                        ("action", ACTIONS[a]),
                        ("family", *family),
                    ];
                    out(&labels, f.counters.requests(p, a, fam));
                }
            }
        },
    );
    e.per_shard(
        g,
        "shoal_responses_total",
        "counter",
        "Answers written, by the shard that wrote them; result=error is a BEP 15 error or an HTTP failure reason.",
        |f, out| {
            for (p, a) in served_pairs() {
                for (fam, family) in FAMILIES.iter().enumerate() {
                    for (o, outcome) in OUTCOMES.iter().enumerate() {
                        let labels = [
                            ("protocol", PROTOCOLS[p]),
                            ("action", ACTIONS[a]),
                            ("family", *family),
                            ("result", *outcome),
                        ];
                        out(&labels, f.counters.responses(p, a, fam, o));
                    }
                }
            }
        },
    );
    e.per_shard(
        g,
        "shoal_udp_datagrams_received_total",
        "counter",
        "UDP datagrams read.",
        |f, out| out(&[], f.counters.udp_datagrams),
    );
    e.per_shard(
        g,
        "shoal_udp_dropped_total",
        "counter",
        "UDP datagrams left unanswered, by reason.",
        |f, out| {
            for (i, reason) in UDP_DROPS.iter().enumerate() {
                out(&[("reason", reason)], f.counters.udp_dropped(i));
            }
        },
    );
    e.per_shard(
        g,
        "shoal_forwarded_total",
        "counter",
        "Requests (or scrape parts) sent to the shard owning the infohash.",
        |f, out| {
            for (i, kind) in FORWARDED.iter().enumerate() {
                out(&[("kind", kind)], f.counters.forwarded(i));
            }
        },
    );
    e.per_shard(
        g,
        "shoal_http_connections_accepted_total",
        "counter",
        "HTTP connections accepted.",
        |f, out| out(&[], f.counters.http_accepted),
    );
    e.per_shard(
        g,
        "shoal_http_connections_refused_total",
        "counter",
        "HTTP connections closed at once because the shard had http.max_connections open, all busy.",
        |f, out| out(&[], f.counters.http_refused),
    );
    e.per_shard(
        g,
        "shoal_tls_handshake_failures_total",
        "counter",
        "HTTPS connections dropped because their TLS handshake failed or timed out.",
        |f, out| out(&[], f.counters.tls_handshake_failures),
    );
    e.per_shard(
        g,
        "shoal_http_connections_evicted_total",
        "counter",
        "HTTP connections waiting for a request, closed at http.max_connections to admit a new one.",
        |f, out| out(&[], f.counters.http_evicted),
    );
    e.per_shard(
        g,
        "shoal_torrents",
        "gauge",
        "Torrents with at least one peer.",
        |f, out| out(&[], f.swarms.torrents as u64),
    );
    for (name, help, pick) in [
        (
            "shoal_peers",
            "Peers stored, by address family.",
            (|c: &crate::storage::PeerCount| c.seeders + c.leechers) as fn(&_) -> usize,
        ),
        ("shoal_seeders", "Seeders stored.", |c| c.seeders),
        ("shoal_leechers", "Leechers stored.", |c| c.leechers),
    ] {
        e.per_shard(g, name, "gauge", help, |f, out| {
            out(&[("family", "ipv4")], pick(&f.swarms.v4) as u64);
            out(&[("family", "ipv6")], pick(&f.swarms.v6) as u64);
        });
    }
    e.per_shard(
        g,
        "shoal_evicted_torrents_total",
        "counter",
        "Torrents evicted (the least recently announced of a sample) to stay within tracker.max_torrents.",
        |f, out| out(&[], f.swarms.evicted_torrents),
    );
    e.per_shard(
        g,
        "shoal_unstored_peers_total",
        "counter",
        "New peers answered but not stored because their torrent had tracker.max_peers_per_torrent.",
        |f, out| out(&[], f.swarms.unstored_peers),
    );
    e.per_shard(
        g,
        "shoal_expired_peers_total",
        "counter",
        "Peers dropped for not announcing within tracker.peer_lifetime.",
        |f, out| out(&[], f.counters.expired_peers),
    );
    e.per_shard(
        g,
        "shoal_expired_torrents_total",
        "counter",
        "Torrents dropped when their last peer expired.",
        |f, out| out(&[], f.counters.expired_torrents),
    );
    e.family(
        "shoal_jwk_fetch_failures_total",
        "counter",
        "JWK Set refreshes of the jwt hook that failed (the last keys were kept).",
    );
    e.sample(
        "shoal_jwk_fetch_failures_total",
        &[],
        crate::middleware::jwk_set::fetch_failures(),
    );
    redis(&mut e);
    private(&mut e);
    e.family(
        "shoal_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP): success taken, failure refused with the running one kept.",
    );
    let (taken, refused) = super::reloads::counts();
    e.sample(
        "shoal_config_reloads_total",
        &[("result", "success")],
        taken,
    );
    e.sample(
        "shoal_config_reloads_total",
        &[("result", "failure")],
        refused,
    );
    e.family(
        "shoal_expiry_sweep_duration_seconds",
        "histogram",
        "Time spent in one expiry slice (every 100 ms per shard).",
    );
    for (id, s) in g.shards.iter().enumerate() {
        let c = &s.figures.counters;
        let shard = id.to_string();
        e.histogram(
            "shoal_expiry_sweep_duration_seconds",
            &[("shard", &shard)],
            &SWEEP_BUCKETS,
            Buckets {
                cumulative: c.sweep_cumulative(),
                count: c.sweep_count,
                sum: c.sweep_seconds,
            },
        );
    }
    if g.latency_histograms {
        e.family(
            "shoal_request_duration_seconds",
            "histogram",
            "From reading a request to handing its answer to the kernel.",
        );
        for (id, s) in g.shards.iter().enumerate() {
            let shard = id.to_string();
            for series in s.figures.latency.iter().flat_map(|l| &l.series) {
                let (cumulative, count) = series.cumulative();
                e.histogram(
                    "shoal_request_duration_seconds",
                    &[
                        ("shard", &shard),
                        ("protocol", series.protocol),
                        ("action", series.action),
                    ],
                    &BUCKETS,
                    Buckets {
                        cumulative,
                        count,
                        sum: series.sum_seconds(),
                    },
                );
            }
        }
    }
    for (name, kind, help, value) in [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            process.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            process.resident_bytes as f64,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            process.virtual_bytes as f64,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            process.open_fds as f64,
        ),
        (
            "process_max_fds",
            "gauge",
            "The limit on open file descriptors.",
            process.max_fds as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            process.start_time_seconds,
        ),
    ] {
        e.family(name, kind, help);
        e.sample(name, &[], value);
    }
    e.text
}

/// Private mode's database thread, with `private.enabled`.
fn private(e: &mut Exposition) {
    use crate::private::link::FIGURES as F;
    use std::sync::atomic::Ordering::Relaxed;
    if !F.enabled.load(Relaxed) {
        return;
    }
    let seconds = |micros: u64| micros as f64 / 1e6;
    let figures = [
        (
            "shoal_private_database_up",
            "gauge",
            "1 while the database takes reads and writes.",
            u64::from(F.database_up.load(Relaxed)) as f64,
        ),
        (
            "shoal_private_pending_rows",
            "gauge",
            "Accounting rows not yet written (in memory and journaled).",
            F.pending_rows.load(Relaxed) as f64,
        ),
        (
            "shoal_private_journal_rows",
            "gauge",
            "Accounting rows journaled to disk and not yet written to the database.",
            F.journaled_rows.load(Relaxed) as f64,
        ),
        (
            "shoal_private_flushes_total",
            "counter",
            "Batches of accounting written.",
            F.flushes.load(Relaxed) as f64,
        ),
        (
            "shoal_private_flush_failures_total",
            "counter",
            "Flushes the database did not take (the rows were kept).",
            F.flush_failures.load(Relaxed) as f64,
        ),
        (
            "shoal_private_flush_seconds_total",
            "counter",
            "Time spent writing batches.",
            seconds(F.flush_micros.load(Relaxed)),
        ),
        (
            "shoal_private_last_flush_seconds",
            "gauge",
            "How long the last batch took to write.",
            seconds(F.last_flush_micros.load(Relaxed)),
        ),
        (
            "shoal_private_rows_written_total",
            "counter",
            "Accounting rows written.",
            F.rows_written.load(Relaxed) as f64,
        ),
        (
            "shoal_private_reloads_total",
            "counter",
            "Full reads of users, torrents, tokens and the whitelist.",
            F.reloads.load(Relaxed) as f64,
        ),
        (
            "shoal_private_reload_failures_total",
            "counter",
            "Full reads that failed (the last catalog was kept).",
            F.reload_failures.load(Relaxed) as f64,
        ),
        (
            "shoal_private_users",
            "gauge",
            "Enabled users known.",
            F.users.load(Relaxed) as f64,
        ),
        (
            "shoal_private_torrents",
            "gauge",
            "Registered torrents known.",
            F.torrents.load(Relaxed) as f64,
        ),
    ];
    unlabelled(e, &figures);
}

/// One sample without labels per family: (name, type, help, value).
fn unlabelled(e: &mut Exposition, figures: &[(&str, &str, &str, f64)]) {
    for &(name, kind, help, value) in figures {
        e.family(name, kind, help);
        e.sample(name, &[], value);
    }
}

/// The Redis service's figures, with `storage.backend: redis`.
fn redis(e: &mut Exposition) {
    use crate::storage::replica::{Stats, STATS};
    if !STATS.enabled.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let figures = [
        (
            "shoal_redis_up",
            "gauge",
            "1 while the last exchange with Redis worked.",
            &STATS.up,
        ),
        (
            "shoal_redis_pending_changes",
            "gauge",
            "Peer changes waiting to be pushed to Redis.",
            &STATS.pending,
        ),
        (
            "shoal_redis_pushed_changes_total",
            "counter",
            "Peer changes pushed to Redis.",
            &STATS.pushed,
        ),
        (
            "shoal_redis_pulled_changes_total",
            "counter",
            "Other instances' peer changes pulled from Redis.",
            &STATS.pulled,
        ),
        (
            "shoal_redis_commands_total",
            "counter",
            "Redis commands sent (each command of a pipeline counts).",
            &STATS.commands,
        ),
        (
            "shoal_redis_errors_total",
            "counter",
            "Exchanges with Redis that failed (the changes were kept).",
            &STATS.errors,
        ),
        (
            "shoal_redis_coalesced_changes_total",
            "counter",
            "Pending changes merged away past storage.redis.max_pending (a peer's latest kept).",
            &STATS.coalesced,
        ),
    ]
    .map(|(name, kind, help, counter)| (name, kind, help, Stats::get(counter) as f64));
    unlabelled(e, &figures);
}
