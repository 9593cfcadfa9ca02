//! What the MariaDB and PostgreSQL harnesses share: finding the server's
//! programs, the system user a server runs as when the tests are root, a
//! data directory initialised once and copied for every server, waiting
//! for a start, and running the command-line client.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a server may take to accept connections before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The first of `names` found on PATH or in `dirs` (Debian keeps server
/// binaries in /usr/sbin or a versioned directory, off a user's PATH).
pub fn find_program(names: &[&str], dirs: &[PathBuf], package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let search: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(dirs.iter().cloned())
        .collect();
    for name in names {
        for dir in &search {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "none of {names:?} found on PATH or in {dirs:?}: install {package} \
         (scripts/test deps does)"
    );
}

/// Who a server process runs as. Database servers refuse to run as root
/// (initdb and postgres always, mariadbd without `--user`), so when the
/// tests are root the server runs as the package's system user; otherwise
/// as ourselves.
#[derive(Clone, Copy, Debug)]
pub struct RunAs {
    /// (uid, gid) to switch to, or `None` to stay who we are.
    ids: Option<(u32, u32)>,
}

impl RunAs {
    /// `system_user` when we are root, else ourselves. `None` when we are
    /// root and that user does not exist.
    pub fn for_server(system_user: &str) -> Option<RunAs> {
        if !is_root() {
            return Some(RunAs { ids: None });
        }
        let uid = id_of(system_user, "-u")?;
        let gid = id_of(system_user, "-g")?;
        Some(RunAs {
            ids: Some((uid, gid)),
        })
    }

    /// A command for this user (std drops root's supplementary groups
    /// when it changes the uid).
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        if let Some((uid, gid)) = self.ids {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Gives `path` and everything under it to this user.
    pub fn own(&self, path: &Path) {
        if let Some((uid, gid)) = self.ids {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(path)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown -R {uid}:{gid} {}", path.display());
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(user).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A new empty directory under the system temp dir, owned by `run_as`.
pub fn new_temp_dir(prefix: &str, run_as: RunAs) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "shoal-{prefix}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    run_as.own(&dir);
    dir
}

/// `cp -a` (keeps owners when root, and modes: PostgreSQL insists on
/// 0700 for its data directory).
pub fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// A freshly initialised data directory named `key` (which must change
/// with the server version and the init options), made once by `init`
/// and then kept in Cargo's per-target temp dir for every later server,
/// test and run: initialising takes seconds, a copy a fraction of one.
/// `init` gets an empty directory owned by the server user (under the
/// system temp dir, which that user can reach) and fills `<dir>/data`.
/// The finished copy is renamed into place, so an interrupted run never
/// leaves a half-made template.
pub fn template(key: &str, run_as: RunAs, init: impl FnOnce(&Path)) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sql-templates");
    // Files made as a system user are not readable by an ordinary one.
    let key = format!("{key}-{}", if is_root() { "root" } else { "user" });
    let done = cache.join(&key);
    if done.is_dir() {
        return done;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let staging = new_temp_dir("sql-init", run_as);
    init(&staging);
    let partial = cache.join(format!(
        "{key}.partial-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    copy_dir(&staging.join("data"), &partial);
    let _ = std::fs::remove_dir_all(&staging);
    // Another process may have finished first; then use its copy.
    if std::fs::rename(&partial, &done).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
        assert!(done.is_dir(), "template {} not made", done.display());
    }
    done
}

/// A template key part from a version banner: letters, digits, '.', '-'.
pub fn key_part(text: &str) -> String {
    text.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The first line of `program --version`.
pub fn version_of(program: &Path) -> String {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run {} --version: {e}", program.display()));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The last lines of a server's log, for a failure message.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| format!("({e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs `command` (an init step) to success, or panics with its output.
pub fn run_ok(mut command: Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `ready` until it holds; panics with the log's tail if the server
/// exits or `START_TIMEOUT` passes first.
pub fn wait_ready(name: &str, child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{name} exited ({status}) before accepting connections; its log:\n{}",
                log_tail(log)
            );
        }
        if ready() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not accept connections within {START_TIMEOUT:?}; its log:\n{}",
            log_tail(log)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Sends `signal` to the server and waits for it to exit (SIGKILL after
/// 20 s).
pub fn stop_child(child: &mut Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a command-line client with `sql` on stdin: its tab-separated
/// output rows, or its error output when it fails.
pub fn run_client(mut command: Command, sql: &str) -> Result<Vec<Vec<String>>, String> {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    // A client that fails early closes stdin; its stderr says why.
    let _ = child.stdin.take().unwrap().write_all(sql.as_bytes());
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{} ({})",
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect())
}

/// What a test does with either server (`MariaDb`, `Postgres`); generic
/// code can run the same checks on both. Bring it into scope to call
/// `exec` and `query`.
pub trait SqlServer {
    /// `mysql://` or `postgres://shoal:shoal@127.0.0.1:PORT/gazelle`.
    fn url(&self) -> String;
    /// Kills the server; the data stays.
    fn stop(&mut self);
    /// Starts it again on the same port and data; waits until it answers.
    fn restart(&mut self);
    /// The command-line client over TCP as `shoal` in `gazelle`, reading
    /// SQL on stdin, printing tab-separated rows and `NULL` for NULL.
    fn client(&self) -> Command;
    /// Ocelot's six Gazelle tables for this server's dialect.
    fn schema_path(&self) -> &'static Path;
    /// An SQL expression for the bytes written in `hex`
    /// (`UNHEX('00ff')`, `decode('00ff', 'hex')`).
    fn unhex(&self, hex: &str) -> String;
    /// An SQL expression for a binary `expr` as lower-case hex.
    fn hex(&self, expr: &str) -> String;

    /// Rows of the result, columns as text. A binary column comes out
    /// raw from MariaDB and as `\x...` from PostgreSQL: select `hex(..)`.
    fn try_query(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        run_client(self.client(), sql)
    }

    fn query(&self, sql: &str) -> Vec<Vec<String>> {
        self.try_query(sql)
            .unwrap_or_else(|e| panic!("{}: {e}\nin: {sql}", self.url()))
    }

    /// Runs SQL (any number of `;`-separated statements, stopping at the
    /// first error).
    fn try_exec(&self, sql: &str) -> Result<(), String> {
        self.try_query(sql).map(drop)
    }

    fn exec(&self, sql: &str) {
        self.query(sql);
    }

    /// Creates Ocelot's six Gazelle tables (tests/fixtures/gazelle/).
    fn load_gazelle_schema(&self) {
        let path = self.schema_path();
        let sql = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        self.exec(&sql);
    }
}
