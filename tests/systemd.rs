//! The real binary speaks systemd's readiness protocol (dist/systemd's
//! `Type=notify`): READY=1 once it serves, RELOADING=1 then READY=1 around
//! a SIGHUP, STOPPING=1 on SIGTERM.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

#[test]
fn readiness_reload_and_stop_are_notified() {
    let dir = std::env::temp_dir().join(format!("shoal-systemd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml"));
    let t = Tracker::start_with_env(config, &[], &[("NOTIFY_SOCKET", path.as_os_str())]);
    let next = || {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    // It serves once it said so.
    assert!(Client::connected(t.v4).connection_id != 0);
    t.signal(libc::SIGHUP);
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    assert!(t.stop().success());
    assert_eq!(next(), "STOPPING=1");
    let _ = std::fs::remove_dir_all(&dir);
}
