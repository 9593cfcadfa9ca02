//! `/stats`: the figures of `/metrics` as JSON, totals and per shard.

use super::counters::{ACTIONS, FAMILIES, FORWARDED, OUTCOMES, PROTOCOLS, UDP_DROPS};
use super::process::Process;
use super::prometheus::served_pairs;
use super::{Gathered, ShardFigures};
use serde_json::{json, Map, Value};

pub fn render(g: &Gathered, process: &Process) -> String {
    let shards: Vec<Value> = g
        .shards
        .iter()
        .enumerate()
        .map(|(id, s)| {
            let mut v = figures(&s.figures);
            v["shard"] = json!(id);
            v["up"] = json!(s.up);
            v
        })
        .collect();
    let uptime = g.started.elapsed().map_or(0.0, |d| d.as_secs_f64());
    let doc = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": uptime,
        "shards_up": g.shards.iter().filter(|s| s.up).count(),
        "totals": figures(&g.totals()),
        "shards": shards,
        "process": {
            "cpu_seconds": process.cpu_seconds,
            "resident_memory_bytes": process.resident_bytes,
            "virtual_memory_bytes": process.virtual_bytes,
            "open_fds": process.open_fds,
            "max_fds": process.max_fds,
            "start_time_seconds": process.start_time_seconds,
        },
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

/// Nested maps: protocol -> action -> family (-> result).
fn figures(f: &ShardFigures) -> Value {
    let c = &f.counters;
    let mut requests = Map::new();
    let mut responses = Map::new();
    for (p, a) in served_pairs() {
        let mut req = Map::new();
        let mut resp = Map::new();
        for (fam, family) in FAMILIES.iter().enumerate() {
            req.insert(family.to_string(), json!(c.requests(p, a, fam)));
            let by_result: Map<String, Value> = OUTCOMES
                .iter()
                .enumerate()
                .map(|(o, outcome)| (outcome.to_string(), json!(c.responses(p, a, fam, o))))
                .collect();
            resp.insert(family.to_string(), Value::Object(by_result));
        }
        // `value[key] = ...` inserts into a JSON object.
        requests.entry(PROTOCOLS[p]).or_insert_with(|| json!({}))[ACTIONS[a]] = Value::Object(req);
        responses.entry(PROTOCOLS[p]).or_insert_with(|| json!({}))[ACTIONS[a]] =
            Value::Object(resp);
    }
    let named = |names: &[&str], get: &dyn Fn(usize) -> u64| -> Value {
        Value::Object(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), json!(get(i))))
                .collect(),
        )
    };
    let s = &f.swarms;
    let mut v = json!({
        "requests": requests,
        "responses": responses,
        "requests_total": c.total_requests(),
        "responses_total": c.total_responses(),
        "udp_datagrams_received": c.udp_datagrams,
        "udp_dropped": named(&UDP_DROPS, &|i| c.udp_dropped(i)),
        "forwarded": named(&FORWARDED, &|i| c.forwarded(i)),
        "http_connections": { "accepted": c.http_accepted, "refused": c.http_refused, "evicted": c.http_evicted, "tls_handshake_failures": c.tls_handshake_failures },
        "torrents": s.torrents,
        "evicted_torrents": s.evicted_torrents,
        "unstored_peers": s.unstored_peers,
        "peers": s.v4.seeders + s.v4.leechers + s.v6.seeders + s.v6.leechers,
        "seeders": s.v4.seeders + s.v6.seeders,
        "leechers": s.v4.leechers + s.v6.leechers,
        "peers_by_family": {
            "ipv4": { "seeders": s.v4.seeders, "leechers": s.v4.leechers },
            "ipv6": { "seeders": s.v6.seeders, "leechers": s.v6.leechers },
        },
        "expired": { "peers": c.expired_peers, "torrents": c.expired_torrents },
        "expiry_sweeps": { "count": c.sweep_count, "seconds": c.sweep_seconds },
    });
    if let Some(latency) = &f.latency {
        let mut by = Map::new();
        for series in &latency.series {
            let h = &series.histogram;
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
            let entry = json!({
                "count": h.len(),
                "p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "p999": us(0.999),
                "max": h.max() as f64 / 1e3,
            });
            by.entry(series.protocol).or_insert_with(|| json!({}))[series.action] = entry;
        }
        v["latency_us"] = Value::Object(by);
    }
    v
}
