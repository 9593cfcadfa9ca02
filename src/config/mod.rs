//! The one YAML configuration: structure, defaults, `--set` overrides and
//! validation. A bad file stops the start with a message naming the key.

pub mod duration;
pub mod private;
mod size;

pub use private::{Dialect, PrivateConfig};

pub use size::ByteSize;

use crate::protocol::http::client_ip::Cidr;
use crate::protocol::http::route::Routes;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The documented default configuration, shipped as `config.yaml`.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../config.yaml");

/// BEP 15: a client may use a connection id for two minutes.
const MIN_CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub log: LogConfig,
    pub udp: UdpConfig,
    pub http: HttpConfig,
    pub tracker: TrackerConfig,
    pub metrics: MetricsConfig,
    pub hooks: HooksConfig,
    pub storage: StorageConfig,
    pub private: PrivateConfig,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: Backend,
    pub redis: RedisConfig,
    pub snapshot: SnapshotConfig,
}

/// Where swarms live: this instance's memory only, or memory shared with
/// other instances through Redis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    #[default]
    Memory,
    Redis,
}

/// `storage.redis`: the Redis that instances share swarms through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or a unix socket
    /// (`unix:///path` or `redis+unix:///path`).
    pub url: String,
    /// Prefix of Shoal's keys, so several clusters can share one Redis.
    pub key_prefix: String,
    /// How often changes are pushed and other instances' pulled.
    #[serde(with = "duration")]
    pub sync_interval: Duration,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    #[serde(with = "duration")]
    pub command_timeout: Duration,
    /// Changes kept while Redis is unreachable; past it, only each peer's
    /// latest change is kept.
    pub max_pending: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "shoal".into(),
            sync_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            max_pending: 1_000_000,
        }
    }
}

/// Swarms written to disk and read back at start (`path` empty: off).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotConfig {
    pub path: String,
    #[serde(with = "duration")]
    pub interval: Duration,
    pub on_bad_file: OnBadSnapshot,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            interval: Duration::from_secs(5 * 60),
            on_bad_file: OnBadSnapshot::StartEmpty,
        }
    }
}

/// What a start does with a snapshot it cannot read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadSnapshot {
    /// Log why, set the file aside and start with empty swarms.
    #[default]
    StartEmpty,
    /// Refuse to start.
    Fail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    pub cores: Cores,
    pub io_memory: ByteSize,
    #[serde(with = "duration")]
    pub spin_before_park: Duration,
    #[serde(with = "duration")]
    pub preempt_timer: Duration,
    pub channel_capacity: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cores: Cores::Auto,
            io_memory: ByteSize(256 << 10),
            spin_before_park: Duration::ZERO,
            preempt_timer: Duration::from_millis(1),
            channel_capacity: 256,
        }
    }
}

/// `auto` or an explicit list of CPU ids, one shard each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cores {
    #[serde(with = "auto_keyword")]
    Auto,
    List(Vec<usize>),
}

mod auto_keyword {
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("auto")
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        match String::deserialize(d)?.as_str() {
            "auto" => Ok(()),
            other => Err(de::Error::custom(format!("expected `auto`, got `{other}`"))),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UdpConfig {
    pub listen: Vec<SocketAddr>,
    pub kernel_steering: bool,
    pub batch_size: usize,
    pub recv_buffer: ByteSize,
    pub send_buffer: ByteSize,
    pub connection_id_key: String,
    #[serde(with = "duration")]
    pub connection_id_lifetime: Duration,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "0.0.0.0:6969".parse().unwrap(),
                "[::]:6969".parse().unwrap(),
            ],
            kernel_steering: true,
            batch_size: 64,
            recv_buffer: ByteSize(256 << 10),
            send_buffer: ByteSize(4 << 20),
            connection_id_key: String::new(),
            connection_id_lifetime: MIN_CONNECTION_ID_LIFETIME,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: Vec<SocketAddr>,
    pub announce_routes: Vec<String>,
    pub scrape_routes: Vec<String>,
    pub allow_ip_spoofing: bool,
    /// BEP 7: believe a client's `ipv4=` / `ipv6=` address of the other
    /// family than the one it connected from (a dual-stacked peer).
    pub dual_stack: bool,
    pub real_ip_header: String,
    pub trusted_proxies: Vec<String>,
    pub max_connections: usize,
    pub max_request_size: ByteSize,
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// HTTPS on the same shards (rustls).
    pub tls: TlsConfig,
    /// Who may ask `/scrape` without an infohash for every torrent.
    pub full_scrape: FullScrapeConfig,
}

/// `http.tls`: addresses served over TLS, and the PEM files (re-read on
/// SIGHUP).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    /// The certificate chain, leaf first.
    pub cert: String,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// `http.full_scrape`: off unless enabled; then allowed to a request that
/// carries `token` (as `token=` in the query) or comes from one of the
/// `trusted` CIDRs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FullScrapeConfig {
    pub enabled: bool,
    pub token: String,
    pub trusted: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "0.0.0.0:6969".parse().unwrap(),
                "[::]:6969".parse().unwrap(),
            ],
            announce_routes: vec!["/announce".into()],
            scrape_routes: vec!["/scrape".into()],
            allow_ip_spoofing: false,
            dual_stack: false,
            real_ip_header: String::new(),
            trusted_proxies: Vec::new(),
            max_connections: 10_000,
            max_request_size: ByteSize(4 << 10),
            idle_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            tls: TlsConfig::default(),
            full_scrape: FullScrapeConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    #[serde(with = "duration")]
    pub announce_interval: Duration,
    #[serde(with = "duration")]
    pub min_announce_interval: Duration,
    pub default_numwant: u32,
    pub max_numwant: u32,
    pub max_scrape_infohashes: usize,
    #[serde(with = "duration")]
    pub peer_lifetime: Duration,
    /// Per instance (each shard holds its share); 0 = no cap.
    pub max_torrents: usize,
    pub max_peers_per_torrent: usize,
    /// Peers in the announcer's subnet first (off: `null`).
    pub prefer_subnet: Option<PreferSubnet>,
}

/// Prefix lengths that make two addresses one subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferSubnet {
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            announce_interval: Duration::from_secs(30 * 60),
            min_announce_interval: Duration::from_secs(15 * 60),
            default_numwant: 50,
            max_numwant: 200,
            max_scrape_infohashes: 74,
            peer_lifetime: Duration::from_secs(45 * 60),
            max_torrents: 2_000_000,
            max_peers_per_torrent: 100_000,
            prefer_subnet: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: Vec<SocketAddr>,
    pub latency_histograms: bool,
    #[serde(with = "duration")]
    pub shard_deadline: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:6880".parse().unwrap()],
            latency_histograms: false,
            shard_deadline: Duration::from_secs(1),
        }
    }
}

/// Chihaya's hook chains: `hooks.pre` run before the answer, in order,
/// `hooks.post` after it. Names and options are checked by the middleware
/// registry when the server is built.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    pub pre: Vec<HookConfig>,
    pub post: Vec<HookConfig>,
}

/// One hook of a chain: a registered name and its options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub name: String,
    #[serde(default)]
    pub options: serde_yaml::Value,
}

/// What validation parsed out of the text, kept for the shards so that
/// nothing is parsed twice or re-checked with `expect`.
#[derive(Clone, Debug)]
pub struct Checked {
    /// The CPU ids of the shards, in shard order.
    pub cpus: Vec<usize>,
    pub routes: Routes,
    pub trusted_proxies: Vec<Cidr>,
    /// `http.full_scrape.trusted` parsed.
    pub full_scrape_trusted: Vec<Cidr>,
}

/// Reads `path`, applies `--set key.path=VALUE` overrides, parses and
/// validates. Every error names the key at fault.
/// The file, then `SHOAL_<SECTION>__<KEY>` environment overrides, then
/// `--set` overrides (each later one wins).
pub fn load(path: &Path, overrides: &[String]) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let env = env_overrides(std::env::vars_os())?;
    from_layers(&text, &env, overrides).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn from_yaml(text: &str, overrides: &[String]) -> Result<Config, String> {
    from_layers(text, &[], overrides)
}

/// An environment override: the variable's name and its `path=value`.
pub type EnvOverride = (String, String);

/// `SHOAL_TRACKER__ANNOUNCE_INTERVAL=20m` is `tracker.announce_interval=20m`:
/// after the prefix, `__` separates keys and the rest is lowercased.
/// Variables without `__` (`SHOAL_LOG`, say) are not config keys. Sorted by
/// name, so the order is the same on every start.
pub fn env_overrides(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<EnvOverride>, String> {
    let mut found = Vec::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else { continue };
        let Some(keys) = name.strip_prefix("SHOAL_") else {
            continue;
        };
        if !keys.contains("__") {
            continue;
        }
        let value = value
            .into_string()
            .map_err(|_| format!("{name}: the value is not UTF-8"))?;
        let path = keys
            .split("__")
            .collect::<Vec<_>>()
            .join(".")
            .to_lowercase();
        found.push((name.to_owned(), format!("{path}={value}")));
    }
    found.sort();
    Ok(found)
}

fn from_layers(text: &str, env: &[EnvOverride], overrides: &[String]) -> Result<Config, String> {
    let mut tree: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    if tree.is_null() {
        tree = serde_yaml::Value::Mapping(Default::default());
    }
    for (name, item) in env {
        apply_override(&mut tree, item).map_err(|e| format!("environment {name}: {e}"))?;
    }
    for item in overrides {
        apply_override(&mut tree, item)?;
    }
    let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
        let path = e.path().to_string();
        // "udp.listen[0]" reads better as "udp.listen" plus the message.
        let key = path.split('[').next().unwrap_or(&path).to_owned();
        format!("{key}: {}", e.into_inner())
    })?;
    config.validate()?;
    Ok(config)
}

/// `runtime.cores=[0, 1]`: the value is YAML, set at the dotted path.
fn apply_override(tree: &mut serde_yaml::Value, item: &str) -> Result<(), String> {
    let (path, value) = item
        .split_once('=')
        .ok_or_else(|| format!("--set `{item}`: expected key.path=VALUE"))?;
    let value: serde_yaml::Value = serde_yaml::from_str(value)
        .map_err(|e| format!("--set {path}: value is not valid YAML: {e}"))?;
    let mut node = tree;
    for part in path.split('.') {
        if part.is_empty() {
            return Err(format!("--set `{path}`: empty key segment"));
        }
        if node.is_null() {
            *node = serde_yaml::Value::Mapping(Default::default());
        }
        let map = match node {
            serde_yaml::Value::Mapping(map) => map,
            _ => {
                return Err(format!(
                    "--set {path}: `{part}` is inside a value that is not a section"
                ))
            }
        };
        node = map
            .entry(serde_yaml::Value::String(part.to_owned()))
            .or_insert(serde_yaml::Value::Null);
    }
    *node = value;
    Ok(())
}

impl Config {
    /// Checks every key; returns what it parsed on the way.
    pub fn validate(&self) -> Result<Checked, String> {
        let rt = &self.runtime;
        if let Cores::List(list) = &rt.cores {
            if list.is_empty() {
                return Err("runtime.cores: the list is empty; give CPU ids or `auto`".into());
            }
            let allowed = crate::placement::cpus::allowed_cpus();
            if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
                return Err(format!(
                    "runtime.cores: CPU {bad} is not in this process's affinity mask {allowed:?}"
                ));
            }
        }
        if rt.io_memory.0 < 64 << 10 || rt.io_memory.0 > 64 << 20 {
            return Err(format!(
                "runtime.io_memory: {} is outside 64KiB..64MiB",
                rt.io_memory
            ));
        }
        if rt.preempt_timer.is_zero() || rt.preempt_timer > Duration::from_secs(1) {
            return Err("runtime.preempt_timer: must be between 1us and 1s".into());
        }
        if !(1..=65_536).contains(&rt.channel_capacity) {
            return Err("runtime.channel_capacity: must be between 1 and 65536".into());
        }
        let udp = &self.udp;
        if !(1..=1024).contains(&udp.batch_size) {
            return Err(format!(
                "udp.batch_size: {} is outside 1..=1024",
                udp.batch_size
            ));
        }
        for (key, size) in [
            ("udp.recv_buffer", udp.recv_buffer),
            ("udp.send_buffer", udp.send_buffer),
        ] {
            if size.0 < 4096 || size.0 > 1 << 30 {
                return Err(format!("{key}: {size} is outside 4KiB..1GiB"));
            }
        }
        if let Some(dup) = first_duplicate(&udp.listen) {
            return Err(format!("udp.listen: {dup} is listed twice"));
        }
        if !udp.connection_id_key.is_empty() && udp.connection_id_key.len() < 16 {
            return Err(
                "udp.connection_id_key: use at least 16 characters, or leave it empty for a random key"
                    .into(),
            );
        }
        if udp.connection_id_lifetime < MIN_CONNECTION_ID_LIFETIME {
            return Err(format!(
                "udp.connection_id_lifetime: {} is shorter than the 2 minutes BEP 15 lets clients use an id",
                humantime::format_duration(udp.connection_id_lifetime)
            ));
        }
        if udp.connection_id_lifetime > Duration::from_secs(24 * 3600) {
            return Err("udp.connection_id_lifetime: longer than 24h".into());
        }
        let (routes, trusted_proxies) = self.validate_http()?;
        self.private.validate()?;
        let full_scrape_trusted = self.validate_tls_and_full_scrape()?;
        self.validate_metrics()?;
        let t = &self.tracker;
        if t.announce_interval.is_zero() || t.announce_interval.as_secs() > i32::MAX as u64 {
            return Err("tracker.announce_interval: must be at least 1s".into());
        }
        if t.min_announce_interval > t.announce_interval {
            return Err(format!(
                "tracker.min_announce_interval: {} is longer than tracker.announce_interval ({})",
                humantime::format_duration(t.min_announce_interval),
                humantime::format_duration(t.announce_interval)
            ));
        }
        if t.max_numwant == 0 || t.max_numwant > 10_000 {
            return Err("tracker.max_numwant: must be between 1 and 10000".into());
        }
        if t.default_numwant > t.max_numwant {
            return Err(format!(
                "tracker.default_numwant: {} is larger than tracker.max_numwant ({})",
                t.default_numwant, t.max_numwant
            ));
        }
        if !(1..=1000).contains(&t.max_scrape_infohashes) {
            return Err("tracker.max_scrape_infohashes: must be between 1 and 1000".into());
        }
        if t.peer_lifetime <= t.announce_interval {
            return Err(format!(
                "tracker.peer_lifetime: {} must be longer than tracker.announce_interval ({}), or peers vanish between announces",
                humantime::format_duration(t.peer_lifetime),
                humantime::format_duration(t.announce_interval)
            ));
        }
        if t.peer_lifetime.as_secs() > u32::MAX as u64 / 2 {
            return Err("tracker.peer_lifetime: too long".into());
        }
        if t.max_torrents > 1 << 31 {
            return Err("tracker.max_torrents: at most 2147483648 (0: no cap)".into());
        }
        if t.max_peers_per_torrent > 1 << 31 {
            return Err("tracker.max_peers_per_torrent: at most 2147483648 (0: no cap)".into());
        }
        if let Some(p) = t.prefer_subnet {
            if !(1..=32).contains(&p.ipv4_prefix) {
                return Err(format!(
                    "tracker.prefer_subnet.ipv4_prefix: {} is not between 1 and 32",
                    p.ipv4_prefix
                ));
            }
            if !(1..=128).contains(&p.ipv6_prefix) {
                return Err(format!(
                    "tracker.prefer_subnet.ipv6_prefix: {} is not between 1 and 128",
                    p.ipv6_prefix
                ));
            }
        }
        if self.storage.backend == Backend::Redis {
            self.validate_redis()?;
        }
        let snapshot = &self.storage.snapshot;
        if !snapshot.path.is_empty() {
            if snapshot.interval < Duration::from_secs(1) {
                return Err("storage.snapshot.interval: must be at least 1s".into());
            }
            let path = Path::new(&snapshot.path);
            if path.file_name().is_none() {
                return Err(format!(
                    "storage.snapshot.path: `{}` names no file",
                    snapshot.path
                ));
            }
        }
        Ok(Checked {
            cpus: self.shard_cpus(),
            routes,
            trusted_proxies,
            full_scrape_trusted,
        })
    }

    /// `http.tls` (the files themselves are read by `net::tls` at start
    /// and on reload) and `http.full_scrape`; returns the trusted CIDRs.
    fn validate_tls_and_full_scrape(&self) -> Result<Vec<Cidr>, String> {
        let tls = &self.http.tls;
        if let Some(dup) = first_duplicate(&tls.listen) {
            return Err(format!("http.tls.listen: {dup} is listed twice"));
        }
        // SO_REUSEPORT would let both groups bind, and the kernel would
        // then hand plain and TLS clients to either.
        let overlap = |a: &SocketAddr, b: &SocketAddr| {
            a.port() != 0
                && a.port() == b.port()
                && a.is_ipv4() == b.is_ipv4()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        };
        if let Some(both) = tls
            .listen
            .iter()
            .find(|a| self.http.listen.iter().any(|b| overlap(a, b)))
        {
            return Err(format!(
                "http.tls.listen: {both} overlaps http.listen; give HTTPS its own port"
            ));
        }
        if !tls.listen.is_empty() {
            for (key, path) in [("http.tls.cert", &tls.cert), ("http.tls.key", &tls.key)] {
                if path.is_empty() {
                    return Err(format!("{key}: a PEM file is needed for http.tls.listen"));
                }
            }
        }
        let full = &self.http.full_scrape;
        let trusted = full
            .trusted
            .iter()
            .map(|text| {
                text.parse()
                    .map_err(|e| format!("http.full_scrape.trusted: `{text}`: {e}"))
            })
            .collect::<Result<Vec<Cidr>, String>>()?;
        if full.enabled {
            if full.token.is_empty() && trusted.is_empty() {
                return Err("http.full_scrape: enabled without a token or trusted CIDRs; set one (trusted: [\"0.0.0.0/0\", \"::/0\"] opens it to all)".into());
            }
            if !full.token.is_empty()
                && (full.token.len() < 16
                    || !full
                        .token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)))
            {
                return Err("http.full_scrape.token: use at least 16 characters of A-Z, a-z, 0-9, - _ . ~ (sent in a URL)".into());
            }
        }
        Ok(trusted)
    }

    fn validate_redis(&self) -> Result<(), String> {
        let r = &self.storage.redis;
        let schemes = ["redis://", "rediss://", "unix://", "redis+unix://"];
        if !schemes.iter().any(|s| r.url.starts_with(s)) {
            return Err(format!(
                "storage.redis.url: {:?} is not a redis://, rediss://, unix:// or redis+unix:// URL",
                r.url
            ));
        }
        if let Err(e) = redis::Client::open(r.url.as_str()) {
            return Err(format!("storage.redis.url: {e}"));
        }
        if r.key_prefix.is_empty() || r.key_prefix.contains(char::is_whitespace) {
            return Err("storage.redis.key_prefix: must be a non-empty word".into());
        }
        let at_least = |key: &str, d: Duration, min: Duration| {
            if d < min {
                Err(format!(
                    "storage.redis.{key}: {} is shorter than {}",
                    humantime::format_duration(d),
                    humantime::format_duration(min)
                ))
            } else {
                Ok(())
            }
        };
        at_least("sync_interval", r.sync_interval, Duration::from_millis(10))?;
        at_least(
            "connect_timeout",
            r.connect_timeout,
            Duration::from_millis(10),
        )?;
        at_least(
            "command_timeout",
            r.command_timeout,
            Duration::from_millis(10),
        )?;
        if r.max_pending < 1000 {
            return Err(format!(
                "storage.redis.max_pending: {} is below 1000",
                r.max_pending
            ));
        }
        Ok(())
    }

    fn validate_metrics(&self) -> Result<(), String> {
        let m = &self.metrics;
        if let Some(dup) = first_duplicate(&m.listen) {
            return Err(format!("metrics.listen: {dup} is listed twice"));
        }
        if let Some(clash) = m
            .listen
            .iter()
            .find(|a| a.port() != 0 && self.http.listen.contains(a))
        {
            return Err(format!(
                "metrics.listen: {clash} is also in http.listen; give the metrics their own port"
            ));
        }
        // Shards publish on their 100 ms tick, which a busy shard serves
        // within runtime.preempt_timer: a shorter deadline would report
        // healthy shards down.
        let floor = Duration::from_millis(200) + self.runtime.preempt_timer;
        if m.shard_deadline < floor || m.shard_deadline > Duration::from_secs(60) {
            return Err(format!(
                "metrics.shard_deadline: {} is outside {}..60s (at least 200ms + runtime.preempt_timer)",
                humantime::format_duration(m.shard_deadline),
                humantime::format_duration(floor)
            ));
        }
        Ok(())
    }

    /// The announce and scrape routes: as configured, plus Ocelot's
    /// `/:passkey/announce` and `/:passkey/scrape` in private mode when no
    /// configured route carries a passkey.
    fn effective_routes(&self) -> (Vec<String>, Vec<String>) {
        let http = &self.http;
        let (mut announce, mut scrape) = (http.announce_routes.clone(), http.scrape_routes.clone());
        let has_passkey = |routes: &[String]| routes.iter().any(|r| r.contains(":passkey"));
        if self.private.enabled {
            if !has_passkey(&announce) {
                announce.push("/:passkey/announce".into());
            }
            if !has_passkey(&scrape) {
                scrape.push("/:passkey/scrape".into());
            }
        }
        (announce, scrape)
    }

    /// Checks `http.*`; returns the compiled routes and trusted proxies.
    fn validate_http(&self) -> Result<(Routes, Vec<Cidr>), String> {
        let http = &self.http;
        if let Some(dup) = first_duplicate(&http.listen) {
            return Err(format!("http.listen: {dup} is listed twice"));
        }
        let (announce, scrape) = self.effective_routes();
        let routes = Routes::new(&announce, &scrape)
            .map_err(|e| format!("http.announce_routes / http.scrape_routes: {e}"))?;
        let trusted_proxies = self.trusted_proxies()?;
        if !http.real_ip_header.is_empty() && http.trusted_proxies.is_empty() {
            return Err(
                "http.real_ip_header: set http.trusted_proxies too, or the header is never believed"
                    .into(),
            );
        }
        if !(1..=1_000_000).contains(&http.max_connections) {
            return Err("http.max_connections: must be between 1 and 1000000".into());
        }
        if http.max_request_size.0 < 512 || http.max_request_size.0 > 1 << 20 {
            return Err(format!(
                "http.max_request_size: {} is outside 512..1MiB",
                http.max_request_size
            ));
        }
        for (key, d) in [
            ("http.idle_timeout", http.idle_timeout),
            ("http.read_timeout", http.read_timeout),
            ("http.write_timeout", http.write_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{key}: must be longer than 0s"));
            }
        }
        Ok((routes, trusted_proxies))
    }

    /// `http.trusted_proxies` parsed.
    fn trusted_proxies(&self) -> Result<Vec<Cidr>, String> {
        self.http
            .trusted_proxies
            .iter()
            .map(|text| {
                text.parse()
                    .map_err(|e| format!("http.trusted_proxies: `{text}`: {e}"))
            })
            .collect()
    }

    /// The CPU ids of the shards, in shard order.
    fn shard_cpus(&self) -> Vec<usize> {
        match &self.runtime.cores {
            Cores::Auto => crate::placement::cpus::allowed_cpus(),
            Cores::List(list) => list.clone(),
        }
    }

    /// The configuration with secrets masked, for showing.
    fn masked(&self) -> Config {
        let mut shown = self.clone();
        if !shown.udp.connection_id_key.is_empty() {
            shown.udp.connection_id_key = "********".into();
        }
        shown.private = self.private.masked();
        if !shown.http.full_scrape.token.is_empty() {
            shown.http.full_scrape.token = "********".into();
        }
        shown
    }

    /// The effective configuration as YAML, with secrets masked.
    pub fn to_masked_yaml(&self) -> String {
        serde_yaml::to_string(&self.masked())
            .unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }

    /// The effective configuration as one line of JSON, secrets masked:
    /// the start-up log line.
    pub fn to_masked_json(&self) -> String {
        serde_json::to_string(&self.masked()).unwrap_or_else(|e| format!("\"cannot print: {e}\""))
    }
}

fn first_duplicate<T: PartialEq + Copy>(items: &[T]) -> Option<T> {
    items
        .iter()
        .enumerate()
        .find(|(i, a)| items[..*i].contains(a))
        .map(|(_, a)| *a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_file_is_the_default() {
        let parsed = from_yaml(DEFAULT_CONFIG_YAML, &[]).unwrap();
        assert_eq!(parsed, Config::default());
        assert_eq!(from_yaml("", &[]).unwrap(), Config::default());
    }

    #[test]
    fn effective_config_round_trips() {
        let config = from_yaml(DEFAULT_CONFIG_YAML, &["runtime.cores=[0]".into()]).unwrap();
        let printed = serde_yaml::to_string(&config).unwrap();
        assert_eq!(from_yaml(&printed, &[]).unwrap(), config);
    }

    #[test]
    fn overrides_apply_yaml_values() {
        let config = from_yaml(
            DEFAULT_CONFIG_YAML,
            &[
                "runtime.cores=[0]".into(),
                "udp.listen=[\"127.0.0.1:7000\"]".into(),
                "tracker.announce_interval=10m".into(),
                "tracker.min_announce_interval=5m".into(),
            ],
        )
        .unwrap();
        assert_eq!(config.runtime.cores, Cores::List(vec![0]));
        assert_eq!(config.udp.listen, vec!["127.0.0.1:7000".parse().unwrap()]);
        assert_eq!(config.tracker.announce_interval, Duration::from_secs(600));
    }

    fn error_of(yaml: &str, overrides: &[&str]) -> String {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        from_yaml(yaml, &overrides).unwrap_err()
    }

    #[test]
    fn errors_name_the_key() {
        let e = error_of("runtime:\n  coers: auto\n", &[]);
        assert!(e.contains("coers"), "{e}");
        let e = error_of("", &["tracker.peer_lifetime=nonsense"]);
        assert!(e.contains("tracker.peer_lifetime"), "{e}");
        let e = error_of("", &["tracker.default_numwant=500"]);
        assert!(e.contains("tracker.default_numwant"), "{e}");
        let e = error_of("", &["tracker.peer_lifetime=10m"]);
        assert!(e.contains("tracker.peer_lifetime"), "{e}");
        let e = error_of("", &["udp.connection_id_lifetime=1m"]);
        assert!(e.contains("udp.connection_id_lifetime"), "{e}");
        let e = error_of("", &["udp.connection_id_key=short"]);
        assert!(e.contains("udp.connection_id_key"), "{e}");
        let e = error_of("", &["udp.listen=[\"not an address\"]"]);
        assert!(e.contains("udp.listen"), "{e}");
        let e = error_of("", &["runtime.cores=[]"]);
        assert!(e.contains("runtime.cores"), "{e}");
        let e = error_of("", &["runtime.cores=[100000]"]);
        assert!(e.contains("runtime.cores"), "{e}");
        let e = error_of("", &["runtime.cores=sometimes"]);
        assert!(e.contains("runtime.cores"), "{e}");
        let e = error_of("", &["udp.batch_size=0"]);
        assert!(e.contains("udp.batch_size"), "{e}");
        let e = error_of("", &["udp.recv_buffer=12XB"]);
        assert!(e.contains("udp.recv_buffer"), "{e}");
        let e = error_of("", &["log.level=loud"]);
        assert!(e.contains("log.level"), "{e}");
        let e = error_of("", &["nokey"]);
        assert!(e.contains("nokey"), "{e}");
        let e = error_of("", &["http.announce_routes=[\"announce\"]"]);
        assert!(e.contains("http.announce_routes"), "{e}");
        let e = error_of("", &["http.trusted_proxies=[\"10.0.0.0/99\"]"]);
        assert!(e.contains("http.trusted_proxies"), "{e}");
        let e = error_of("", &["http.real_ip_header=X-Forwarded-For"]);
        assert!(e.contains("http.real_ip_header"), "{e}");
        let e = error_of("", &["http.idle_timeout=0s"]);
        assert!(e.contains("http.idle_timeout"), "{e}");
        let e = error_of("", &["udp.listen.x=1"]);
        assert!(e.contains("udp.listen"), "{e}");
        let env = |pairs: &[(&str, &str)]| {
            env_overrides(pairs.iter().map(|(k, v)| ((*k).into(), (*v).into()))).unwrap()
        };
        let vars = env(&[
            ("SHOAL_TRACKER__ANNOUNCE_INTERVAL", "20m"),
            ("SHOAL_STORAGE__REDIS__KEY_PREFIX", "east"),
            ("SHOAL_REQUIRE_PROMTOOL", "1"),
            ("PATH", "/bin"),
        ]);
        assert_eq!(
            vars.iter()
                .map(|(_, item)| item.as_str())
                .collect::<Vec<_>>(),
            [
                "storage.redis.key_prefix=east",
                "tracker.announce_interval=20m"
            ]
        );
        let c = from_layers("tracker:\n  announce_interval: 10m\n", &vars, &[]).unwrap();
        assert_eq!(c.tracker.announce_interval, Duration::from_secs(1200));
        assert_eq!(c.storage.redis.key_prefix, "east");
        let set = ["tracker.announce_interval=25m".to_string()];
        let c = from_layers("", &vars, &set).unwrap();
        assert_eq!(
            c.tracker.announce_interval,
            Duration::from_secs(1500),
            "--set wins"
        );
        let e =
            from_layers("", &env(&[("SHOAL_TRACKER__PEER_LIFETIME", "soon")]), &[]).unwrap_err();
        assert!(e.contains("tracker.peer_lifetime"), "{e}");
        let e = from_layers("", &env(&[("SHOAL_TRACKER__X", "[")]), &[]).unwrap_err();
        assert!(e.starts_with("environment SHOAL_TRACKER__X: "), "{e}");
        let e = error_of("", &["storage.backend=etcd"]);
        assert!(e.contains("storage.backend"), "{e}");
        for (set, key) in [
            ("storage.redis.url=http://x", "storage.redis.url"),
            ("storage.redis.url=redis://[::1", "storage.redis.url"),
            (
                "storage.redis.key_prefix=\"a b\"",
                "storage.redis.key_prefix",
            ),
            (
                "storage.redis.sync_interval=1ms",
                "storage.redis.sync_interval",
            ),
            (
                "storage.redis.command_timeout=0s",
                "storage.redis.command_timeout",
            ),
            ("storage.redis.max_pending=10", "storage.redis.max_pending"),
        ] {
            let e = error_of("", &["storage.backend=redis", set]);
            assert!(e.starts_with(key) || e.contains(key), "{set}: {e}");
        }
        // Redis options are checked only when Redis is used.
        assert!(from_yaml("", &["storage.redis.max_pending=10".into()]).is_ok());
    }

    #[test]
    fn https_listeners_need_files_and_a_port_of_their_own() {
        let tls = |listen: &str| {
            vec![
                "http.listen=[\"0.0.0.0:6969\", \"[::1]:6969\"]".to_string(),
                format!("http.tls.listen={listen}"),
                "http.tls.cert=cert.pem".into(),
                "http.tls.key=key.pem".into(),
            ]
        };
        for (listen, ok) in [
            ("[\"0.0.0.0:6970\"]", true),
            ("[\"127.0.0.1:6970\", \"[::]:6970\"]", true),
            // IPv4 and IPv6 sockets of one port do not meet (only_v6).
            ("[\"[::1]:6970\", \"127.0.0.1:6970\"]", true),
            ("[\"0.0.0.0:6969\"]", false),
            ("[\"127.0.0.1:6969\"]", false),
            ("[\"[::]:6969\"]", false),
        ] {
            let checked = from_yaml("", &tls(listen)).and_then(|c| c.validate().map(|_| ()));
            assert_eq!(checked.is_ok(), ok, "{listen}: {checked:?}");
            if let Err(e) = checked {
                assert!(e.contains("http.tls.listen"), "{e}");
            }
        }
        let e = error_of(
            "",
            &[
                "http.tls.listen=[\"127.0.0.1:6970\"]",
                "http.tls.cert=cert.pem",
            ],
        );
        assert!(e.contains("http.tls.key"), "{e}");
    }

    #[test]
    fn masks_the_key() {
        let config = from_yaml("", &["udp.connection_id_key=0123456789abcdef0123".into()]).unwrap();
        let shown = config.to_masked_yaml();
        assert!(!shown.contains("0123456789abcdef"));
        assert!(shown.contains("********"));
        let config = from_yaml(
            "",
            &[
                "http.full_scrape.enabled=true".into(),
                "http.full_scrape.token=indexer-secret-0123".into(),
            ],
        )
        .unwrap();
        assert!(!config.to_masked_json().contains("indexer-secret"));
    }
}
