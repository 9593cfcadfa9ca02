//! A real MariaDB server for a test: its own data directory in a temp
//! dir, 127.0.0.1 on a private port, a database `gazelle` and a user
//! `shoal` (password `shoal`) with every privilege on it. Stopped and
//! started again by the test with its data kept. `exec`, `query`, `stop`,
//! `restart` and the rest are `super::sqlserver::SqlServer`'s.

use super::sqlserver::{self, RunAs, SqlServer};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Small and quick rather than durable: a test's server holds a few rows.
/// A commit still reaches the OS (flush at commit = 2), so a killed
/// server loses nothing; only a machine crash could.
const SERVER_OPTIONS: &[&str] = &[
    "--skip-name-resolve",
    "--skip-log-bin",
    "--performance-schema=OFF",
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=4M",
    "--innodb-flush-log-at-trx-commit=2",
    "--innodb-doublewrite=0",
    "--max-connections=200",
];

pub struct MariaDb {
    pub port: u16,
    dir: PathBuf,
    run_as: RunAs,
    /// `--user=root` when we are root and there is no `mysql` user.
    as_root: bool,
    /// The test's own server options, after ours (so they win).
    extra: Vec<String>,
    child: Option<Child>,
}

impl MariaDb {
    /// Starts a server with an empty `gazelle` database, and waits until
    /// `shoal` can use it over TCP. MariaDB's default `sql_mode` is strict
    /// (STRICT_TRANS_TABLES): an insert leaving out a NOT NULL column
    /// without a default fails, even as an upsert of an existing row.
    pub fn start() -> MariaDb {
        Self::start_with(&[])
    }

    /// As `start`, with more mariadbd options (kept for `restart`), e.g.
    /// `--sql-mode=` for a lenient server as older Gazelle sites ran.
    pub fn start_with(extra: &[&str]) -> MariaDb {
        let (run_as, as_root) = match RunAs::for_server("mysql") {
            Some(run_as) => (run_as, false),
            None => (RunAs::for_server("root").expect("root exists"), true),
        };
        let dir = sqlserver::new_temp_dir("mariadb", run_as);
        sqlserver::copy_dir(&template(run_as, as_root), &dir.join("data"));
        let mut server = MariaDb {
            port: super::free_port(),
            dir,
            run_as,
            as_root,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.restart();
        sqlserver::run_client(
            server.root_client(),
            "CREATE DATABASE gazelle;\n\
             CREATE USER 'shoal'@'127.0.0.1' IDENTIFIED BY 'shoal';\n\
             CREATE USER 'shoal'@'localhost' IDENTIFIED BY 'shoal';\n\
             GRANT ALL PRIVILEGES ON gazelle.* TO 'shoal'@'127.0.0.1', 'shoal'@'localhost';\n",
        )
        .unwrap_or_else(|e| panic!("create gazelle and shoal: {e}"));
        server
    }

    /// The server's error log (the place to look when a test fails).
    pub fn log(&self) -> PathBuf {
        self.dir.join("mariadb.log")
    }

    /// The command-line client over TCP, batch output without headers.
    fn tcp_client(&self) -> Command {
        let mut command = Command::new(client_binary());
        command
            .arg("--no-defaults")
            .args(["--protocol=TCP", "-h", "127.0.0.1"])
            .arg(format!("--port={}", self.port))
            .args(["--connect-timeout=5", "-N", "-B"]);
        command
    }

    /// The client as root (no password in a fresh data directory).
    fn root_client(&self) -> Command {
        let mut command = self.tcp_client();
        command.args(["-u", "root"]);
        command
    }
}

impl SqlServer for MariaDb {
    fn url(&self) -> String {
        format!("mysql://shoal:shoal@127.0.0.1:{}/gazelle", self.port)
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown). The data
    /// stays; `restart` recovers it.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            sqlserver::stop_child(&mut child, libc::SIGKILL);
        }
    }

    /// Starts the server (again) on the same port and data directory, and
    /// waits until it accepts connections.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "mariadb already running");
        let log = self.log();
        let mut command = self.run_as.command(&server_binary());
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!(
                "--socket={}",
                self.dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--tmpdir={}", self.dir.display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .args(SERVER_OPTIONS)
            .args(&self.extra);
        if self.as_root {
            command.arg("--user=root");
        }
        let mut child = command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start mariadbd: {e}"));
        sqlserver::wait_ready("mariadbd", &mut child, &log, || {
            sqlserver::run_client(self.root_client(), "SELECT 1").is_ok()
        });
        self.child = Some(child);
    }

    fn client(&self) -> Command {
        let mut command = self.tcp_client();
        command.args(["-u", "shoal", "--password=shoal", "gazelle"]);
        command
    }

    fn schema_path(&self) -> &'static Path {
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gazelle/mysql.sql"
        ))
    }

    fn unhex(&self, hex: &str) -> String {
        format!("UNHEX('{hex}')")
    }

    fn hex(&self, expr: &str) -> String {
        format!("LOWER(HEX({expr}))")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server_binary() -> PathBuf {
    sqlserver::find_program(
        &["mariadbd", "mysqld"],
        &["/usr/sbin".into(), "/usr/libexec".into()],
        "mariadb-server",
    )
}

fn client_binary() -> PathBuf {
    sqlserver::find_program(&["mariadb", "mysql"], &[], "mariadb-client")
}

/// An initialised data directory (system tables, root without a
/// password), made by mariadb-install-db once per server version.
fn template(run_as: RunAs, as_root: bool) -> PathBuf {
    let server = server_binary();
    let key = format!(
        "mariadb-v1-{}",
        sqlserver::key_part(&sqlserver::version_of(&server))
    );
    sqlserver::template(&key, run_as, |dir| {
        let install = sqlserver::find_program(
            &["mariadb-install-db", "mysql_install_db"],
            &["/usr/bin".into(), "/usr/scripts".into()],
            "mariadb-server",
        );
        let mut command = run_as.command(&install);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .args(SERVER_OPTIONS)
            .current_dir(dir);
        if as_root {
            command.arg("--user=root");
        }
        sqlserver::run_ok(command, "mariadb-install-db");
    })
}
