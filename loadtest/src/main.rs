//! `shoal-loadtest`: load generator for BitTorrent trackers.
//!
//! ```text
//! # UDP (BEP 15), 12 s on CPU 1, JSON report on stdout:
//! shoal-loadtest udp --target 127.0.0.1:6969 --duration 12s --cpus 1 --json
//! # aquatic_udp_load_test's workload (50% connects, exp-decay popularity):
//! shoal-loadtest udp --target 127.0.0.1:6969 --mix 50:50:1 --popularity exp-decay
//! # HTTP, 64 keep-alive connections pipelining 4 requests each:
//! shoal-loadtest http --target 127.0.0.1:8080 --sockets 64 --inflight 4
//! # A private tracker's passkey as BEP 41 URL data:
//! shoal-loadtest udp --target 127.0.0.1:6969 --url-data /<passkey>/announce
//! # Open loop: 50k requests/s over two workers, 2 s warmup first:
//! shoal-loadtest udp --target [::1]:6969 --cpus 0,1 --rate 50000 --warmup 2s
//! ```
//!
//! A progress line goes to stderr every second (`--quiet` to silence);
//! the report goes to stdout, as a table or with `--json` as one object.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shoal_loadtest::fill::{fill, FillOptions};
use shoal_loadtest::options::parse_cpu_list;
use shoal_loadtest::workload::Workload;
use shoal_loadtest::{run, Mix, Options, Popularity};
use std::io::Write as _;

#[derive(Parser)]
#[command(
    name = "shoal-loadtest",
    version,
    about = "Load generator for BitTorrent trackers (UDP BEP 15 and HTTP)"
)]
struct Cli {
    #[command(subcommand)]
    mode: ModeCmd,
}

#[derive(Subcommand)]
enum ModeCmd {
    /// BEP 15: connect, announce and scrape over UDP.
    Udp {
        #[command(flatten)]
        common: Common,
        /// BEP 41 URL data with every announce, e.g. a private tracker's
        /// /<passkey>/announce (at most 255 bytes).
        #[arg(long, default_value = "")]
        url_data: String,
    },
    /// Memory benchmark: store exactly TORRENTS x PEERS-PER-TORRENT peers
    /// over UDP (each announce answered once), then exit.
    Fill {
        /// Tracker address (UDP).
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 100_000)]
        torrents: usize,
        #[arg(long, default_value_t = 10)]
        peers_per_torrent: usize,
        /// Fraction of each torrent's peers announcing as seeders.
        #[arg(long, default_value_t = 0.5)]
        seeders: f64,
        /// Announces outstanding at once.
        #[arg(long, default_value_t = 256)]
        inflight: usize,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Print the info hashes the fill uses (hex, one per line) and exit.
        #[arg(long)]
        print_info_hashes: bool,
    },
    /// Announce and scrape over keep-alive HTTP/1.1 (connect weight ignored).
    Http {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "/announce")]
        announce_path: String,
        #[arg(long, default_value = "/scrape")]
        scrape_path: String,
    },
}

/// A newtype, so clap takes the list as one value.
#[derive(Clone)]
struct CpuList(Vec<usize>);

#[derive(Args)]
struct Common {
    /// Tracker address, e.g. 127.0.0.1:6969 or [::1]:6969.
    #[arg(long)]
    target: SocketAddr,
    /// Measured time (at most 1h).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Load before measuring starts, left out of the report.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// One worker pinned to each CPU: "1", "0,1", "2-5".
    #[arg(long, value_parser = |s: &str| parse_cpu_list(s).map(CpuList))]
    cpus: Option<CpuList>,
    /// Unpinned workers, when --cpus is not given.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Number of torrents.
    #[arg(long, default_value_t = 10_000)]
    torrents: usize,
    /// Number of peer identities (peer id, port, key).
    #[arg(long, default_value_t = 100_000)]
    peers: usize,
    /// Torrent popularity: pareto:SHAPE (Zipf exponent 1/SHAPE), uniform,
    /// or exp-decay (aquatic_udp_load_test's).
    #[arg(long, default_value = "pareto:1.0")]
    popularity: Popularity,
    /// Fraction of announces with left=0.
    #[arg(long, default_value_t = 0.75)]
    seeders: f64,
    /// Request weights CONNECT:ANNOUNCE:SCRAPE (aquatic's default: 50:50:1).
    #[arg(long, default_value = "1:100:1")]
    mix: Mix,
    /// Peers asked for per announce; more in an answer is an error.
    #[arg(long, default_value_t = 50)]
    numwant: u32,
    /// Info hashes per scrape.
    #[arg(long, default_value_t = 5)]
    scrape_size: usize,
    /// UDP sockets / TCP connections per worker [default: udp 8, http 32].
    #[arg(long)]
    sockets: Option<usize>,
    /// Outstanding requests per socket/connection [default: udp 32, http 1].
    #[arg(long)]
    inflight: Option<usize>,
    /// Open loop: total requests per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// A request unanswered this long counts as a timeout.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// UDP: send each announce with its own sendmmsg entry instead of
    /// grouping them as one UDP GSO message.
    #[arg(long)]
    no_gso: bool,
    /// Seed of the workload (info hashes, peers, choices).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Print the workload's info hashes (hex, one per line) and exit:
    /// a whitelist for trackers that need one (Debian's opentracker).
    #[arg(long)]
    print_info_hashes: bool,
}

fn print_hashes(hashes: impl Iterator<Item = [u8; 20]>) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for h in hashes {
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(out, "{hex}");
    }
}

impl Common {
    fn apply(self, mut o: Options) -> (Options, bool) {
        if self.print_info_hashes {
            o.torrents = self.torrents;
            o.seed = self.seed.unwrap_or(o.seed);
            print_hashes(Workload::new(&o).info_hashes.into_iter());
            std::process::exit(0);
        }
        o.duration = self.duration;
        o.warmup = self.warmup;
        o.cpus = self.cpus.map(|c| c.0).unwrap_or_default();
        o.workers = self.workers;
        o.torrents = self.torrents;
        o.peers = self.peers;
        o.popularity = self.popularity;
        o.seeders = self.seeders;
        o.mix = self.mix;
        o.numwant = self.numwant;
        o.scrape_size = self.scrape_size;
        o.sockets = self.sockets.unwrap_or(o.sockets);
        o.inflight = self.inflight.unwrap_or(o.inflight);
        o.rate = self.rate;
        o.timeout = self.timeout;
        o.seed = self.seed.unwrap_or(o.seed);
        o.gso = !self.no_gso;
        o.progress = !self.quiet;
        (o, self.json)
    }
}

fn main() -> ExitCode {
    let (opts, json) = match Cli::parse().mode {
        ModeCmd::Fill {
            target,
            torrents,
            peers_per_torrent,
            seeders,
            inflight,
            json,
            print_info_hashes,
        } => {
            if print_info_hashes {
                print_hashes((0..torrents as u32).map(shoal_loadtest::fill::info_hash));
                return ExitCode::SUCCESS;
            }
            let o = FillOptions {
                torrents,
                peers_per_torrent,
                seeders,
                inflight,
                ..FillOptions::new(target)
            };
            return match fill(&o) {
                Ok(r) if json => {
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    println!(
                        "stored {} peers in {} torrents in {:.1}s ({:.0} announces/s, {} resent, {} errors)",
                        r.peers_stored, r.torrents, r.seconds, r.announces_per_second, r.resent, r.errors
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("shoal-loadtest: {e}");
                    ExitCode::from(2)
                }
            };
        }
        ModeCmd::Udp { common, url_data } => {
            let t = common.target;
            let (mut o, json) = common.apply(Options::udp(t));
            o.url_data = url_data;
            (o, json)
        }
        ModeCmd::Http {
            common,
            announce_path,
            scrape_path,
        } => {
            let t = common.target;
            let (mut o, json) = common.apply(Options::http(t));
            o.announce_path = announce_path;
            o.scrape_path = scrape_path;
            (o, json)
        }
    };
    match run(&opts) {
        Ok(report) => {
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shoal-loadtest: {e}");
            ExitCode::from(2)
        }
    }
}
