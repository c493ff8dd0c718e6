//! Shared by the daemon's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// Tests of one binary that use network namespaces, veths or fixed ports run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A test that cannot run here says so loudly (it does not silently pass).
pub fn skipped(test: &str, why: &str) {
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}

/// A program on PATH or in the sbin directories (root's tools need not be on PATH).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Every verdict line carries these fields (a public interface: other tools parse them).
pub const VERDICT_FIELDS: &[&str] = &[
    "event_type",
    "ts",
    "detected_at",
    "flow_id",
    "flow_start",
    "proto",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "label",
    "score",
    "scores",
    "packets",
    "bytes",
    "model",
    "trigger",
];

/// Starts a real rsyslogd in the foreground on loopback UDP and TCP ports,
/// parsing RFC 5424 structured data (mmpstrucdata) and writing each input
/// to `DIR/udp.log` / `DIR/tcp.log` as `pri|time|host|app|procid|msgid|sd|msg`.
/// The UDP receive buffer is 4 MiB: a SIGTERM flush sends hundreds of
/// messages in a few milliseconds, more than the default buffer holds.
pub fn start_rsyslogd(rsyslogd: impl AsRef<Path>, dir: impl AsRef<Path>, udp_port: u16, tcp_port: u16) -> Child {
    let (rsyslogd, dir) = (rsyslogd.as_ref(), dir.as_ref());
    let d = dir.display();
    let config = format!(
        r#"global(workDirectory="{d}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
module(load="mmpstrucdata")
template(name="tw" type="string"
  string="%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%$!rfc5424-sd%|%msg%\n")
ruleset(name="udp") {{ action(type="mmpstrucdata") action(type="omfile" file="{d}/udp.log" template="tw") }}
ruleset(name="tcp") {{ action(type="mmpstrucdata") action(type="omfile" file="{d}/tcp.log" template="tw") }}
input(type="imudp" address="127.0.0.1" port="{udp_port}" ruleset="udp" rcvbufSize="4m")
input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="tcp")
"#
    );
    let conf = dir.join("rsyslog.conf");
    std::fs::write(&conf, config).unwrap();
    let pidfile = dir.join("rsyslogd.pid");
    Command::new(rsyslogd)
        .args(["-n", "-f", conf.to_str().unwrap(), "-i", pidfile.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}
