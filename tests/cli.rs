//! The command line: config checking, defaults, errors that name the key.

use std::process::Command;

fn shoal(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_prints_the_effective_config() {
    let (code, out, _) = shoal(&[
        "--check-config",
        "--set",
        "runtime.cores=[0]",
        "--set",
        "udp.listen=[\"127.0.0.1:7000\"]",
        "--set",
        "udp.connection_id_key=a very secret key indeed",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("- 0"), "{out}");
    assert!(out.contains("127.0.0.1:7000"), "{out}");
    assert!(!out.contains("very secret"), "the key is masked: {out}");
}

#[test]
fn print_default_config_is_the_shipped_file() {
    let (code, out, _) = shoal(&["--print-default-config"]);
    assert_eq!(code, 0);
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml")).unwrap();
    assert_eq!(out, shipped);
}

#[test]
fn bad_config_refuses_to_start_naming_the_key() {
    for (set, key) in [
        (
            "tracker.announce_interval=soon",
            "tracker.announce_interval",
        ),
        ("udp.batch_size=0", "udp.batch_size"),
        ("runtime.surprise=1", "surprise"),
        ("udp.listen=[\"nowhere\"]", "udp.listen"),
    ] {
        let (code, _, err) = shoal(&["--set", set]);
        assert_eq!(code, 2, "{set}");
        assert!(err.contains(key), "{set}: {err}");
    }
    let (code, _, err) = shoal(&["--config", "/nonexistent/shoal.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/shoal.yaml"), "{err}");
}

#[test]
fn version_and_help() {
    let (code, out, _) = shoal(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(env!("CARGO_PKG_VERSION")));
    let (code, out, _) = shoal(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--set",
        "--check-config",
        "--print-default-config",
    ] {
        assert!(out.contains(flag), "{flag} in help");
    }
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (code, out, err) = shoal(&[
        "--set",
        "runtime.cores=[0]",
        "--set",
        &format!("udp.listen=[\"{addr}\"]"),
    ]);
    assert_ne!(code, 0);
    let all = format!("{out}{err}");
    assert!(
        all.contains("udp.listen") && all.contains(&addr.to_string()),
        "{all}"
    );
}

#[test]
fn a_taken_metrics_port_is_a_clear_error_logged_as_json() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (code, out, err) = shoal(&[
        "--set",
        "runtime.cores=[0]",
        "--set",
        "udp.listen=[\"127.0.0.1:0\"]",
        "--set",
        "http.listen=[]",
        "--set",
        &format!("metrics.listen=[\"{addr}\"]"),
        "--set",
        "log.format=json",
    ]);
    assert_ne!(code, 0);
    // Every line is a JSON object; the start-up line carries the masked
    // configuration and the last one names the key at fault.
    let lines: Vec<serde_json::Value> = format!("{out}{err}")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("effective configuration"))));
    let last = lines.last().expect("a log line");
    assert_eq!(last["level"], "ERROR");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.contains("metrics.listen") && message.contains(&addr.to_string()),
        "{message}"
    );
}

#[test]
fn metrics_settings_are_validated() {
    for (set, key) in [
        ("metrics.shard_deadline=10ms", "metrics.shard_deadline"),
        (
            "metrics.listen=[\"127.0.0.1:9\", \"127.0.0.1:9\"]",
            "metrics.listen",
        ),
        ("log.format=xml", "log.format"),
    ] {
        let (code, _, err) = shoal(&["--check-config", "--set", "runtime.cores=[0]", "--set", set]);
        assert_eq!(code, 2, "{set}");
        assert!(err.contains(key), "{set}: {err}");
    }
}

/// `SHOAL_<SECTION>__<KEY>` applies after the file and before `--set`, is
/// shown by --check-config, and a bad one names the variable.
#[test]
fn environment_overrides_sit_between_the_file_and_set() {
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("--check-config")
            .args(args)
            .envs(env.iter().copied())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let env = [
        ("SHOAL_TRACKER__ANNOUNCE_INTERVAL", "20m"),
        ("SHOAL_TRACKER__DEFAULT_NUMWANT", "33"),
    ];
    let (code, out, err) = run(&env, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("announce_interval: 20m"), "{out}");
    assert!(out.contains("default_numwant: 33"), "{out}");
    let (_, out, _) = run(&env, &["--set", "tracker.default_numwant=44"]);
    assert!(out.contains("announce_interval: 20m"), "{out}");
    assert!(out.contains("default_numwant: 44"), "--set wins: {out}");
    let (code, _, err) = run(&[("SHOAL_UDP__LISTEN", "[")], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("environment SHOAL_UDP__LISTEN"), "{err}");
}
