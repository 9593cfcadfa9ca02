//! A real PostgreSQL server for a test: its own data directory in a temp
//! dir, 127.0.0.1 on a private port (its unix socket in the temp dir), a
//! database `gazelle` owned by the role `shoal` (password `shoal`).
//! Stopped and started again by the test with its data kept. `exec`,
//! `query`, `stop`, `restart` and the rest are `super::sqlserver::SqlServer`'s.

use super::sqlserver::{self, RunAs, SqlServer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Small and quick rather than durable. `synchronous_commit` stays on, so
/// a commit reaches the OS before it returns and a killed server loses
/// nothing; without fsync only a machine crash could.
const SERVER_OPTIONS: &[&str] = &[
    "fsync=off",
    "full_page_writes=off",
    "shared_buffers=16MB",
    "max_connections=100",
];

pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    run_as: RunAs,
    /// The test's own `-c` settings, after ours (so they win).
    extra: Vec<String>,
    child: Option<Child>,
}

impl Postgres {
    /// Starts a server with an empty `gazelle` database, and waits until
    /// it accepts connections.
    pub fn start() -> Postgres {
        Self::start_with(&[])
    }

    /// As `start`, with more settings (`-c name=value`, kept for
    /// `restart`), e.g. `log_statement=all`.
    pub fn start_with(extra: &[&str]) -> Postgres {
        let run_as = RunAs::for_server("postgres").expect(
            "tests run as root need the `postgres` system user (Debian's postgresql package makes it)",
        );
        let dir = sqlserver::new_temp_dir("postgres", run_as);
        sqlserver::copy_dir(&template(run_as), &dir.join("data"));
        let mut server = Postgres {
            port: super::free_port(),
            dir,
            run_as,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.restart();
        // Owning the database, `shoal` owns the tables it creates there.
        sqlserver::run_client(
            server.superuser_client(),
            "CREATE ROLE shoal LOGIN PASSWORD 'shoal';\n\
             CREATE DATABASE gazelle OWNER shoal;\n",
        )
        .unwrap_or_else(|e| panic!("create gazelle and shoal: {e}"));
        server
    }

    /// The server's log (the place to look when a test fails).
    pub fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// psql with unaligned, tab-separated rows and nothing else.
    fn psql(&self) -> Command {
        let mut command = Command::new(bin_dir().join("psql"));
        command
            .args(["-X", "-q", "-A", "-t", "-F", "\t", "-P", "null=NULL"])
            .args(["-v", "ON_ERROR_STOP=1"])
            .arg("-p")
            .arg(self.port.to_string())
            .env("PGCONNECT_TIMEOUT", "5");
        command
    }

    /// psql as the superuser over the unix socket (trusted locally).
    fn superuser_client(&self) -> Command {
        let mut command = self.psql();
        command
            .arg("-h")
            .arg(&self.dir)
            .args(["-U", "postgres", "-d", "postgres"]);
        command
    }
}

impl SqlServer for Postgres {
    fn url(&self) -> String {
        format!("postgres://shoal:shoal@127.0.0.1:{}/gazelle", self.port)
    }

    /// Stops the server as a crash would: SIGQUIT, PostgreSQL's immediate
    /// shutdown (the postmaster ends every backend at once and exits
    /// without a checkpoint; a SIGKILL would leave the backends behind).
    /// The data stays; `restart` recovers it from the WAL.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            sqlserver::stop_child(&mut child, libc::SIGQUIT);
        }
    }

    /// Starts the server (again) on the same port and data directory, and
    /// waits until it accepts connections.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "postgres already running");
        let log = self.log();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open postgres.log");
        let mut command = self.run_as.command(&bin_dir().join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"]);
        for option in SERVER_OPTIONS
            .iter()
            .copied()
            .chain(self.extra.iter().map(|s| s.as_str()))
        {
            command.args(["-c", option]);
        }
        let mut child = command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start postgres: {e}"));
        sqlserver::wait_ready("postgres", &mut child, &log, || {
            sqlserver::run_client(self.superuser_client(), "SELECT 1").is_ok()
        });
        self.child = Some(child);
    }

    fn client(&self) -> Command {
        let mut command = self.psql();
        command
            .args(["-h", "127.0.0.1", "-U", "shoal", "-d", "gazelle"])
            .env("PGPASSWORD", "shoal");
        command
    }

    fn schema_path(&self) -> &'static Path {
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gazelle/postgres.sql"
        ))
    }

    fn unhex(&self, hex: &str) -> String {
        format!("decode('{hex}', 'hex')")
    }

    fn hex(&self, expr: &str) -> String {
        format!("encode({expr}, 'hex')")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PostgreSQL's programs: Debian keeps them in /usr/lib/postgresql/<major>/bin,
/// off PATH; the newest major version there wins, else PATH's `postgres`.
pub fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let postgres = sqlserver::find_program(&["postgres"], &[], "postgresql");
    postgres.parent().unwrap().to_owned()
}

/// An initialised data directory (superuser `postgres`, trusted on the
/// unix socket, passwords over TCP), made by initdb once per version.
fn template(run_as: RunAs) -> PathBuf {
    let bin = bin_dir();
    let key = format!(
        "postgres-v1-{}",
        sqlserver::key_part(&sqlserver::version_of(&bin.join("postgres")))
    );
    sqlserver::template(&key, run_as, |dir| {
        let mut command = run_as.command(&bin.join("initdb"));
        command
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .current_dir(dir);
        sqlserver::run_ok(command, "initdb");
    })
}
