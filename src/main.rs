use clap::Parser;
use shoal::config::{self, Config, DEFAULT_CONFIG_YAML};
use shoal::server::Server;
use std::path::PathBuf;
use std::process::ExitCode;

/// Shoal: a thread-per-core BitTorrent tracker (UDP BEP 15/41) on io_uring.
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
    if cli.check_config {
        print!("{}", config.to_masked_yaml());
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    run(config)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.log.level.as_str()));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

fn run(config: Config) -> ExitCode {
    tracing::info!("effective configuration:\n{}", config.to_masked_yaml());
    let running = match Server::new(config).start() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
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
    match running.join() {
        Ok(stats) => {
            for (id, s) in stats.iter().enumerate() {
                tracing::info!(
                    shard = id,
                    datagrams = s.datagrams.get(),
                    answered = s.answered.get(),
                    forwarded = s.forwarded.get(),
                    forward_dropped = s.forward_dropped.get(),
                    http_answered = s.http_answered.get(),
                    http_malformed = s.http_malformed.get(),
                    http_refused = s.http_refused.get(),
                    bad_connection_id = s.bad_connection_id.get(),
                    malformed = s.malformed.get(),
                    send_dropped = s.send_dropped.get(),
                    expired_peers = s.expired_peers.get(),
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
