//! `tidewatchd replay --output ...` into real listeners: syslog over UDP,
//! TCP (RFC 6587 octet counting), unix sockets, a dead server, and (when
//! installed) a real rsyslogd. The JSON output of the same run is the
//! reference: syslog gets its incidents (by default) and, when asked, its
//! non-benign verdicts, one message each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn demo() -> String {
    repo().join("pcaps/demo.pcap").to_str().unwrap().to_string()
}

/// A fresh directory for one test.
fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tidewatchd-outputs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The socket tests run one at a time: two cores, and UDP on loopback
/// drops when its reader is starved.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

struct Run {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Runs tidewatchd, killing it (and failing) if it takes longer than `limit`.
fn tidewatchd(args: &[&str], limit: Duration) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidewatchd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = reader.join().unwrap();
            return Run { code: status.code(), stderr, took: started.elapsed() };
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tidewatchd {args:?} still running after {limit:?}: {}", reader.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A replay whose syslog outputs carry verdicts and incidents.
fn replay_ok(outputs: &[String], json: &Path) -> Run {
    replay_with(outputs, json, &["--syslog-events", "verdict,incident"])
}

fn replay_with(outputs: &[String], json: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["replay".to_string(), demo(), "--output".into(), format!("json:{}", json.display())];
    args.extend(extra.iter().map(|s| s.to_string()));
    for o in outputs {
        args.push("--output".into());
        args.push(o.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = tidewatchd(&args, Duration::from_secs(60));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    run
}

/// The JSON verdicts of a run that are not benign, keyed by (flow_id, trigger).
fn non_benign(json: &Path) -> BTreeMap<(String, String), serde_json::Value> {
    let text = std::fs::read_to_string(json).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event_type"] == "verdict" && v["label"] != "benign" {
            let key = (v["flow_id"].to_string(), v["trigger"].as_str().unwrap().to_string());
            assert!(out.insert(key, v).is_none(), "two verdicts for one flow and trigger");
        }
    }
    assert!(out.len() > 100, "the demo has attacks: {}", out.len());
    out
}

type IncidentKey = (String, String, String);

/// Collects datagrams from `recv` (a socket with a read timeout) until the
/// first timeout after at least one arrived.
fn datagrams(
    mut recv: impl FnMut(&mut [u8]) -> std::io::Result<usize> + Send + 'static,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut out = Vec::new();
        loop {
            match recv(&mut buf) {
                Ok(n) => out.push(String::from_utf8(buf[..n].to_vec()).unwrap()),
                Err(_) if !out.is_empty() => return out,
                Err(_) => {}
            }
        }
    })
}

/// The JSON incident records of a run, keyed by (incident_id, state, ts).
fn incidents(json: &Path) -> BTreeMap<IncidentKey, serde_json::Value> {
    let text = std::fs::read_to_string(json).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event_type"] == "incident" {
            let key = (
                v["incident_id"].to_string(),
                v["state"].as_str().unwrap().to_string(),
                v["ts"].as_str().unwrap().to_string(),
            );
            assert!(out.insert(key, v).is_none(), "two incident records with one id, state and time");
        }
    }
    out
}

/// Checks one incident message's SD params (and its TIMESTAMP) against the JSON record.
fn check_incident(sd: &BTreeMap<String, String>, ts: &str, json: &BTreeMap<IncidentKey, serde_json::Value>, m: &str) {
    let key = (sd["incident_id"].clone(), sd["state"].clone(), ts.to_string());
    let v = json.get(&key).unwrap_or_else(|| panic!("no such incident record in the JSON: {m}"));
    for f in ["label", "actor", "first_seen", "last_seen", "model"] {
        assert_eq!(sd[f], v[f].as_str().unwrap(), "{f} in {m}");
    }
    for f in ["src_count", "targets", "ports", "flows", "packets", "bytes", "time_to_detect_ms"] {
        assert_eq!(sd[f], v[f].to_string(), "{f} in {m}");
    }
}

/// Splits an RFC 5424 message into its header fields, its SD params
/// (unescaped, checking that `"`, `\` and `]` are escaped) and MSG.
fn parse_rfc5424(msg: &str) -> (Vec<String>, BTreeMap<String, String>, String) {
    let rest = msg.strip_prefix('<').unwrap_or_else(|| panic!("no PRI: {msg}"));
    let (pri, rest) = rest.split_once('>').unwrap();
    let rest = rest.strip_prefix("1 ").unwrap_or_else(|| panic!("not version 1: {msg}"));
    let mut parts = rest.splitn(6, ' ');
    let mut header = vec![pri.to_string()];
    for _ in 0..5 {
        header.push(parts.next().unwrap().to_string());
    }
    let sd = parts.next().unwrap();
    let sd = sd.strip_prefix("[tidewatch@32473 ").unwrap_or_else(|| panic!("no SD element: {msg}"));
    let mut params = BTreeMap::new();
    let mut chars = sd.chars();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b']' && b != b'"'));
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        loop {
            match chars.next().unwrap() {
                '\\' => {
                    let c = chars.next().unwrap();
                    assert!(matches!(c, '"' | '\\' | ']'), "bad escape \\{c}");
                    value.push(c);
                }
                '"' => break,
                ']' => panic!("unescaped ] in {msg}"),
                c => value.push(c),
            }
        }
        params.insert(name, value);
        match chars.next() {
            Some(' ') => continue,
            Some(']') => break,
            other => panic!("unexpected {other:?} in {msg}"),
        }
    }
    let text: String = chars.collect();
    let text = text.strip_prefix(' ').unwrap_or_else(|| panic!("no SP before MSG: {msg}"));
    (header, params, text.to_string())
}

/// Checks that `messages` are exactly the non-benign verdicts and the
/// incident records of `json`.
fn check_against_json(messages: &[String], json: &Path) {
    let expected = non_benign(json);
    let incidents = incidents(json);
    assert!(!incidents.is_empty(), "the demo's attacks make incidents");
    assert_eq!(
        messages.len(),
        expected.len() + incidents.len(),
        "one syslog message per non-benign verdict and incident"
    );
    let mut seen = BTreeMap::new();
    for m in messages {
        let (header, sd, text) = parse_rfc5424(m);
        assert_eq!(header[0], "132", "local0 (16) * 8 + warning (4): {m}");
        assert!(header[1].ends_with('Z') && header[1].len() == 27, "{m}");
        if header[5] == "incident" {
            check_incident(&sd, &header[1], &incidents, m);
            assert!(text.starts_with(&format!("tidewatch: {} incident ", sd["label"])), "{m}");
            let key = (format!("incident {} {} {}", sd["incident_id"], sd["state"], header[1]), String::new());
            assert!(seen.insert(key, ()).is_none(), "duplicate {m}");
            continue;
        }
        assert_eq!((header[3].as_str(), header[5].as_str()), ("tidewatchd", "verdict"));
        assert!(header[4].parse::<u32>().is_ok(), "PROCID is the pid: {m}");
        let key = (sd["flow_id"].clone(), sd["trigger"].clone());
        let v = expected.get(&key).unwrap_or_else(|| panic!("no such verdict in the JSON: {m}"));
        for f in ["proto", "src_ip", "dst_ip", "label", "model", "trigger", "ts", "flow_start"] {
            assert_eq!(sd[f], v[f].as_str().unwrap(), "{f} in {m}");
        }
        for f in ["src_port", "dst_port", "packets", "bytes"] {
            assert_eq!(sd[f], v[f].to_string(), "{f} in {m}");
        }
        assert_eq!(sd["score"].parse::<f32>().unwrap(), v["score"].as_f64().unwrap() as f32);
        assert_eq!(header[1], sd["ts"], "TIMESTAMP is the verdict's ts");
        assert!(text.starts_with(&format!("tidewatch: {} verdict (", sd["label"])), "{m}");
        assert!(seen.insert(key, ()).is_none(), "duplicate message {m}");
    }
}

/// The summary's entry for one output: `... (syslog RFC 5424: sent N, dropped M, ...)`.
fn summary_counts(stderr: &str, target: &str) -> (u64, u64) {
    let at = stderr.find(&format!("{target} (")).unwrap_or_else(|| panic!("{target} not in the summary: {stderr}"));
    let entry = &stderr[at..];
    let num = |word: &str| -> u64 {
        let i = entry.find(word).unwrap_or_else(|| panic!("no `{word}` in {entry}")) + word.len();
        entry[i..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
    };
    (num("sent "), num("dropped "))
}

#[test]
fn syslog_udp_gets_one_datagram_per_non_benign_verdict() {
    let _serial = serial();
    let dir = tmpdir("udp");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    sock.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = Arc::clone(&got);
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut started = false;
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => {
                    started = true;
                    got2.lock().unwrap().push(String::from_utf8(buf[..n].to_vec()).unwrap());
                }
                Err(_) if started => return,
                Err(_) => {} // not yet
            }
        }
    });
    let json = dir.join("v.jsonl");
    let target = format!("syslog:udp://127.0.0.1:{port}");
    let run = replay_ok(std::slice::from_ref(&target), &json);
    reader.join().unwrap();
    let got = got.lock().unwrap();
    check_against_json(&got, &json);
    assert_eq!(summary_counts(&run.stderr, &target), (got.len() as u64, 0), "{}", run.stderr);
    assert!(run.stderr.contains("benign not sent"), "{}", run.stderr);
}

#[test]
fn syslog_carries_only_incidents_by_default() {
    let _serial = serial();
    let dir = tmpdir("default-events");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    sock.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let reader = datagrams(move |buf| sock.recv(buf));
    let json = dir.join("v.jsonl");
    let target = format!("syslog:udp://127.0.0.1:{port}");
    let run = replay_with(std::slice::from_ref(&target), &json, &[]);
    let got = reader.join().unwrap();
    let incidents = incidents(&json);
    let alerts = non_benign(&json).len();
    assert_eq!(got.len(), incidents.len(), "{}", run.stderr);
    for m in &got {
        let (header, sd, _) = parse_rfc5424(m);
        assert_eq!(header[5], "incident", "{m}");
        check_incident(&sd, &header[1], &incidents, m);
    }
    // Every incident opens and closes; far fewer incidents than alerts, and
    // fewer messages (open, updates at their cadence, close) than alerts.
    let opened = incidents.keys().filter(|(_, s, _)| s == "open").count();
    let closed = incidents.keys().filter(|(_, s, _)| s == "closed").count();
    assert_eq!(opened, closed);
    assert!(opened * 10 < alerts, "{opened} incidents for {alerts} alert verdicts");
    assert!(got.len() * 4 < alerts, "{} incident messages for {alerts} alert verdicts", got.len());
    assert_eq!(summary_counts(&run.stderr, &target), (got.len() as u64, 0), "{}", run.stderr);
}

#[test]
fn syslog_tcp_uses_octet_counting_frames() {
    let _serial = serial();
    let dir = tmpdir("tcp");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let reader = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut r = BufReader::new(s);
        let mut out = Vec::new();
        loop {
            let mut len = Vec::new();
            if r.read_until(b' ', &mut len).unwrap() == 0 {
                return out; // tidewatchd closed the connection at the end
            }
            let len = std::str::from_utf8(&len).unwrap();
            let n: usize = len.strip_suffix(' ').unwrap().parse().unwrap_or_else(|_| panic!("bad frame {len:?}"));
            assert!(!len.starts_with('0'), "MSG-LEN has no leading zero");
            let mut msg = vec![0; n];
            r.read_exact(&mut msg).unwrap();
            assert_eq!(msg.first(), Some(&b'<'), "frame boundaries line up");
            out.push(String::from_utf8(msg).unwrap());
        }
    });
    let json = dir.join("v.jsonl");
    let target = format!("syslog:tcp://127.0.0.1:{port}");
    let run = replay_ok(std::slice::from_ref(&target), &json);
    let got = reader.join().unwrap();
    check_against_json(&got, &json);
    assert_eq!(summary_counts(&run.stderr, &target), (got.len() as u64, 0), "{}", run.stderr);
}

#[test]
fn a_dead_tcp_syslog_server_neither_fails_nor_stalls_the_replay() {
    let _serial = serial();
    let dir = tmpdir("dead");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again
    let json = dir.join("v.jsonl");
    let target = format!("syslog:tcp://127.0.0.1:{port}");
    let run = replay_ok(std::slice::from_ref(&target), &json);
    assert!(run.took < Duration::from_secs(20), "{:?}", run.took);
    let expected = (non_benign(&json).len() + incidents(&json).len()) as u64;
    assert_eq!(summary_counts(&run.stderr, &target), (0, expected), "{}", run.stderr);
    assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
    // JSON output is unaffected.
    assert!(summary_counts(&run.stderr, &json.display().to_string()).0 > expected);
}

#[test]
fn syslog_unix_datagram_socket() {
    let _serial = serial();
    let dir = tmpdir("unix");
    let path = dir.join("log.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let reader = datagrams(move |buf| sock.recv(buf));
    let json = dir.join("v.jsonl");
    let target = format!("syslog:unix:{}", path.display());
    let run = replay_ok(std::slice::from_ref(&target), &json);
    let got = reader.join().unwrap();
    check_against_json(&got, &json);
    assert_eq!(summary_counts(&run.stderr, &target), (got.len() as u64, 0), "{}", run.stderr);
}

#[test]
fn syslog_unix_stream_socket_gets_one_message_per_line() {
    let _serial = serial();
    let dir = tmpdir("unix-stream");
    let path = dir.join("log.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let reader = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        BufReader::new(s).lines().map(Result::unwrap).collect::<Vec<_>>()
    });
    let json = dir.join("v.jsonl");
    let target = format!("syslog:unix:{}", path.display());
    replay_ok(std::slice::from_ref(&target), &json);
    check_against_json(&reader.join().unwrap(), &json);
}

#[test]
fn bad_output_addresses_exit_2_and_name_the_accepted_forms() {
    for bad in [
        "xml:foo",
        "json:",
        "syslog:udp://127.0.0.1",
        "syslog:udp://:514",
        "syslog:tcp://host:0",
        "syslog:tcp://host:99999",
        "syslog:tcp://::1:514",
        "syslog:tcp://[::1:514",
        "syslog:unix:",
        "syslog:ftp://host:21",
        "syslog:127.0.0.1:514",
    ] {
        let run = tidewatchd(&["replay", &demo(), "--output", bad], Duration::from_secs(30));
        assert_eq!(run.code, Some(2), "{bad}: {}", run.stderr);
        for form in ["json:PATH", "json:-", "syslog:udp://HOST:PORT", "syslog:tcp://HOST:PORT", "syslog:unix:PATH"] {
            assert!(run.stderr.contains(form), "{bad}: message lacks {form}: {}", run.stderr);
        }
        assert!(run.stderr.contains(&format!("`{bad}`")), "{}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

/// A real rsyslogd (imudp + imtcp, mmpstrucdata to parse the structured
/// data) receives the replay over UDP and TCP; what it wrote must match the
/// JSON output. Skipped, loudly, when rsyslogd is not installed
/// (`apt-get install rsyslog`). Needs no root: ports and files are its own.
#[test]
fn rsyslog_parses_what_replay_sends() {
    let Some(rsyslogd) = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].into_iter().find(|p| Path::new(p).exists()) else {
        eprintln!("SKIPPED rsyslog_parses_what_replay_sends: rsyslogd is not installed (apt-get install rsyslog)");
        return;
    };
    let _serial = serial();
    let dir = tmpdir("rsyslog");
    let free_port = || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (udp_port, tcp_port) = (UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(), free_port());
    let child = common::start_rsyslogd(rsyslogd, &dir, udp_port, tcp_port);
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _rsyslogd = Kill(child);

    // Ready when a probe sent each way has been written out.
    let lines = |name: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(name)).unwrap_or_default().lines().map(str::to_string).collect()
    };
    let probe = "<134>1 - - probe - - - ready";
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    while lines("udp.log").is_empty() || lines("tcp.log").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(20), "rsyslogd did not come up");
        let _ = udp.send_to(probe.as_bytes(), ("127.0.0.1", udp_port));
        if lines("tcp.log").is_empty() {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", tcp_port)) {
                use std::io::Write;
                let _ = s.write_all(format!("{} {probe}", probe.len()).as_bytes());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let probes = |name: &str| lines(name).len();
    let (udp_probes, tcp_probes) = (probes("udp.log"), probes("tcp.log"));

    let json = dir.join("v.jsonl");
    let run =
        replay_ok(&[format!("syslog:udp://127.0.0.1:{udp_port}"), format!("syslog:tcp://127.0.0.1:{tcp_port}")], &json);
    let expected = non_benign(&json);
    let incidents = incidents(&json);
    let total = expected.len() + incidents.len();
    for (name, probes) in [("udp.log", udp_probes), ("tcp.log", tcp_probes)] {
        let started = Instant::now();
        while lines(name).len() < probes + total && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let got: Vec<String> = lines(name).into_iter().filter(|l| !l.contains("|probe|")).collect();
        assert_eq!(got.len(), total, "{name}: {}", run.stderr);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        for line in &got {
            let f: Vec<&str> = line.splitn(8, '|').collect();
            assert_eq!(f[0], "132", "{line}");
            assert_eq!(f[2], hostname.trim(), "{line}");
            assert!(f[4].parse::<u32>().is_ok(), "{line}");
            let sd: serde_json::Value = serde_json::from_str(f[6]).unwrap_or_else(|e| panic!("{e}: {line}"));
            let sd = &sd["tidewatch@32473"];
            if f[5] == "incident" {
                let id = sd["incident_id"].as_str().unwrap();
                let state = sd["state"].as_str().unwrap();
                assert!(
                    incidents.iter().any(|((i, s, _), v)| i == id && s == state && v["label"] == sd["label"]),
                    "{line}"
                );
                continue;
            }
            assert_eq!((f[3], f[5]), ("tidewatchd", "verdict"), "{line}");
            let key = (sd["flow_id"].as_str().unwrap().to_string(), sd["trigger"].as_str().unwrap().to_string());
            let v = &expected[&key];
            for k in ["proto", "src_ip", "dst_ip", "label", "model", "ts", "flow_start"] {
                assert_eq!(sd[k], v[k], "{k}: {line}");
            }
            for k in ["src_port", "dst_port", "packets", "bytes"] {
                assert_eq!(sd[k].as_str().unwrap(), v[k].to_string(), "{k}: {line}");
            }
            assert_eq!(sd["score"].as_str().unwrap().parse::<f32>().unwrap(), v["score"].as_f64().unwrap() as f32);
            // rsyslog may print the same instant as +00:00.
            let ts = v["ts"].as_str().unwrap();
            assert!(f[1] == ts || f[1] == ts.replace('Z', "+00:00"), "{} vs {ts}", f[1]);
            assert!(f[7].trim_start().starts_with("tidewatch: "), "{line}");
        }
    }
}
