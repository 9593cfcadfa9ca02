use clap::Parser;
use shoal::config::{self, Config, LogFormat, DEFAULT_CONFIG_YAML};
use shoal::net::notify::notify;
use shoal::server::{Reloader, Server};
use std::path::PathBuf;
use std::process::ExitCode;

/// Shoal: a thread-per-core BitTorrent tracker (UDP and HTTP) on io_uring.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The YAML configuration file.
    #[arg(long, default_value = "config.yaml")]
    config: PathBuf,
    /// Override one key: key.path=VALUE, VALUE in YAML (repeatable),
    /// e.g. --set runtime.cores=[0] --set 'udp.listen=["127.0.0.1:7000"]'.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Validate the configuration, print the effective one, and exit.
    #[arg(long)]
    check_config: bool,
    /// Print the documented default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG_YAML}");
        return ExitCode::SUCCESS;
    }
    let config = match config::load(&cli.config, &cli.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // The hook chains are built from the config here, so a bad hook is a
    // configuration error like any other key.
    let server = Server::new(config);
    if let Err(e) = server.check() {
        eprintln!("shoal: configuration error: {}: {e}", cli.config.display());
        return ExitCode::from(2);
    }
    if cli.check_config {
        print!("{}", server.config().to_masked_yaml());
        return ExitCode::SUCCESS;
    }
    init_logging(server.config());
    run(server, cli)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log.level.as_str()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// SIGHUP re-reads the config file (with the same `--set` overrides) and
/// applies what can change live (the hooks, with the files they read); a
/// bad config is refused with the reason and the running one kept.
fn watch_reloads(reloader: Reloader, cli: Cli) {
    let mut signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install the SIGHUP handler (no live reload): {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("shoal-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                notify("RELOADING=1");
                let applied = reloader.reload(config::load(&cli.config, &cli.overrides));
                match applied {
                    Ok(restart) if restart.is_empty() => {
                        tracing::info!(config = %cli.config.display(), "configuration reloaded")
                    }
                    Ok(restart) => tracing::warn!(
                        config = %cli.config.display(),
                        "configuration reloaded; changes to {} take effect at the next restart",
                        restart.join(", ")
                    ),
                    Err(e) => tracing::error!(
                        "reload refused, the running configuration is kept: {}: {e}",
                        cli.config.display()
                    ),
                }
                notify("READY=1");
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the reload thread (no live reload): {e}");
    }
}

fn run(server: Server, cli: Cli) -> ExitCode {
    tracing::info!(
        "effective configuration: {}",
        server.config().to_masked_json()
    );
    let running = match server.start() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    watch_reloads(running.reloader(), cli);
    notify("READY=1");
    let flag = running.shutdown_flag();
    // The first SIGINT/SIGTERM asks the shards to stop; a second one, if
    // they have not, ends the process at once.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let registered = signal_hook::flag::register_conditional_shutdown(signal, 1, flag.clone())
            .and_then(|_| signal_hook::flag::register(signal, flag.clone()));
        if let Err(e) = registered {
            tracing::error!("cannot install signal handler: {e}");
            running.shutdown();
            break;
        }
    }
    // Tells systemd as soon as a stop begins (the shards then take up to a
    // tick, the last snapshot and Redis push longer).
    let stopping = std::thread::spawn({
        let flag = flag.clone();
        move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                // The shards' own tick: a stop is seen as soon as they see it.
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            notify("STOPPING=1");
        }
    });
    let joined = running.join();
    let _ = stopping.join();
    match joined {
        Ok(shards) => {
            for (id, f) in shards.iter().enumerate() {
                let c = &f.counters;
                tracing::info!(
                    shard = id,
                    requests = c.total_requests(),
                    responses = c.total_responses(),
                    udp_datagrams = c.udp_datagrams,
                    http_connections = c.http_accepted,
                    expired_peers = c.expired_peers,
                    torrents = f.swarms.torrents,
                    "shard stopped"
                );
            }
            tracing::info!("Shoal stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
