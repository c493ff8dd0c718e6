//! Faults around the daemon: outputs that cannot be written, an output
//! nobody reads, a capture interface that disappears. Each test checks the
//! documented behaviour, that nothing panics or hangs (every wait is
//! bounded) and that what is lost is counted.
//!
//! Behaviour (as of this test):
//! - Under `run`, a JSON file output that fails to write (a full disk,
//!   `/dev/full`) drops and counts, and is reopened with backoff; the daemon
//!   keeps capturing and the other outputs lose nothing.
//! - Under `replay` a JSON file output that fails to write is fatal (a
//!   verdict file with holes is worse than an error): the failure is counted
//!   on the output (`failed`), the engine stops at the next verdict it
//!   delivers, the error names the output and the OS error, exit 1. Lines
//!   already written are whole JSON lines.
//! - An output that blocks (a pipe nobody reads) never stalls capture or the
//!   other outputs: its bounded queue fills, then drops and counts; at
//!   SIGTERM it gets `flush_timeout` (5 s) and what is left is counted as
//!   dropped; `sent + dropped = verdicts`, exit 0.
//! - An interface deleted under `tidewatchd run`: open flows are flushed
//!   through the classifier to the outputs, then exit 1 naming the interface.
//! - A corrupt model on SIGHUP is in `live.rs`
//!   (`sighup_reload_good_then_corrupt_model_while_traffic_flows`), not here.
//!
//! The live tests need root (`ip link add` of a veth pair) and `tcpreplay`;
//! they say SKIPPED loudly when either is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{find_tool, serial, skipped};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn demo() -> String {
    repo().join("pcaps/demo.pcap").to_str().unwrap().to_string()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tidewatchd")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidewatchd-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// One test at a time: two cores, and the live ones share tools.
struct Out {
    code: Option<i32>,
    stderr: String,
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Waits for `child` at most `limit`, then kills it and fails: a hang.
fn wait_bounded(mut child: Child, what: &str, limit: Duration) -> Out {
    let err = drain(child.stderr.take().unwrap());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = err.join().unwrap();
            assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
            return Out { code: status.code(), stderr };
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?} (hang); stderr: {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_bounded(prog: &str, args: &[&str], limit: Duration) -> Out {
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    wait_bounded(child, &format!("{prog} {args:?}"), limit)
}

/// Every line but a possibly cut last one is a whole JSON object.
fn whole_lines(path: &Path) -> usize {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let complete = if text.ends_with('\n') { text.as_str() } else { &text[..text.rfind('\n').map_or(0, |i| i + 1)] };
    let mut n = 0;
    for l in complete.lines() {
        serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not a whole JSON line ({e}): {l}"));
        n += 1;
    }
    n
}

#[test]
fn replay_to_a_full_device_exits_1_naming_the_output() {
    let _g = serial();
    let o = run_bounded(bin(), &["replay", &demo(), "--output", "json:/dev/full"], Duration::from_secs(60));
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("json:/dev/full") && o.stderr.contains("No space left on device"), "{}", o.stderr);
}

#[test]
fn replay_filling_a_tiny_filesystem_leaves_whole_lines() {
    let _g = serial();
    let test = "replay_filling_a_tiny_filesystem_leaves_whole_lines";
    let Some(unshare) = find_tool("unshare") else { return skipped(test, "no unshare (util-linux)") };
    // A 64 KiB tmpfs in a private mount namespace (needs root): full after ~130 verdicts.
    let mnt = tmp("tiny");
    std::fs::create_dir_all(&mnt).unwrap();
    let probe = Command::new(&unshare).args(["-m", "true"]).stderr(Stdio::null()).status().unwrap();
    if !probe.success() {
        return skipped(test, "cannot make a mount namespace (run as root)");
    }
    let other = tmp("other.jsonl");
    // The file is copied out of the namespace before the mount goes away.
    let copy = tmp("tiny-copy.jsonl");
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs {m} && {bin} replay {demo} --output json:{m}/v.jsonl --output json:{o}; \
         code=$?; cp {m}/v.jsonl {c}; exit $code",
        m = mnt.display(),
        bin = bin(),
        demo = demo(),
        o = other.display(),
        c = copy.display()
    );
    let o = run_bounded(unshare.to_str().unwrap(), &["-m", "sh", "-c", &script], Duration::from_secs(60));
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("No space left on device"), "{}", o.stderr);
    let written = whole_lines(&copy);
    assert!(written > 0, "nothing written before the disk was full");
    let size = std::fs::metadata(&copy).unwrap().len();
    assert!(size <= 64 * 1024, "{size} bytes on a 64 KiB filesystem");
    // The engine stopped at the failure: the other output got the verdicts up to there.
    let on_other = whole_lines(&other);
    eprintln!(
        "tiny filesystem: {written} whole verdict lines ({size} B) before ENOSPC; the other output got {on_other}"
    );
}

/// A veth pair in the root namespace with a unique name, IPv6 off (no
/// packets of the kernel's own), removed on drop.
struct Veth {
    ip: PathBuf,
    capture: String,
    send: String,
}

impl Veth {
    fn new(test: &str, tag: char) -> Option<Veth> {
        let Some(ip) = find_tool("ip") else {
            skipped(test, "no `ip` (iproute2)");
            return None;
        };
        let n = std::process::id() % 100_000;
        let (capture, send) = (format!("twf{n}{tag}0"), format!("twf{n}{tag}1"));
        let ok = Command::new(&ip)
            .args(["link", "add", &capture, "type", "veth", "peer", "name", &send])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skipped(test, "cannot create a veth pair (run as root)");
            return None;
        }
        let v = Veth { ip, capture, send };
        for i in [&v.capture, &v.send] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{i}/disable_ipv6"), "1");
            Command::new(&v.ip).args(["link", "set", i, "up"]).status().unwrap();
        }
        Some(v)
    }

    fn delete(&self) {
        let _ = Command::new(&self.ip).args(["link", "del", &self.capture]).stderr(Stdio::null()).status();
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Starts `tidewatchd run` on the veth's capture end and waits for it to capture.
fn start_run(v: &Veth, outputs: &[String], stats_interval: &str) -> (Child, JoinHandle<String>) {
    let mut args = vec!["run", "--interface", &v.capture, "--workers", "1", "--stats-interval", stats_interval];
    for o in outputs {
        args.extend(["--output", o.as_str()]);
    }
    let mut child = Command::new(bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr line by line until "capturing on", then keep the rest.
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let started = Instant::now();
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut err, &mut line).unwrap();
        head.push_str(&line);
        if n == 0 || line.contains("capturing on") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "tidewatchd run did not start: {head}");
    }
    assert!(head.contains("capturing on"), "tidewatchd run did not start: {head}");
    let rest = drain(err);
    let all = std::thread::spawn(move || head + &rest.join().unwrap());
    (child, all)
}

fn wait_child(mut child: Child, err: JoinHandle<String>, limit: Duration) -> Out {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = err.join().unwrap();
            assert!(!stderr.contains("panicked"), "{stderr}");
            return Out { code: status.code(), stderr };
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tidewatchd run still running after {limit:?} (hang): {}", err.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tcpreplay(test: &str, iface: &str, pcap: &str, pps: &str) -> bool {
    let Some(t) = find_tool("tcpreplay") else {
        skipped(test, "no tcpreplay (apt-get install tcpreplay)");
        return false;
    };
    let o = run_bounded(t.to_str().unwrap(), &["-q", "-i", iface, "--pps", pps, pcap], Duration::from_secs(120));
    assert_eq!(o.code, Some(0), "tcpreplay: {}", o.stderr);
    true
}

fn final_stats(stderr: &str) -> Value {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("\"event_type\":\"stats\"") && l.contains("\"final\":true"))
        .unwrap_or_else(|| panic!("{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// An output's entry in the stats (`{"output": .., "sent": N, "dropped": M, ..}`) → (sent, dropped).
fn sent_dropped(out: &Value) -> (u64, u64) {
    let num = |w: &str| out[w].as_u64().unwrap_or_else(|| panic!("no {w} in {out}"));
    (num("sent"), num("dropped"))
}

/// Records every output was given: verdicts and incident records.
fn records(stats: &Value) -> u64 {
    stats["verdicts"].as_u64().unwrap() + stats["incident_records"].as_u64().unwrap()
}

#[test]
fn run_with_a_json_output_on_a_full_device_drops_counts_and_keeps_running() {
    let _g = serial();
    let test = "run_with_a_json_output_on_a_full_device_drops_counts_and_keeps_running";
    let Some(v) = Veth::new(test, 'a') else { return };
    let other = tmp("run-full-other.jsonl");
    let _ = std::fs::remove_file(&other);
    let outputs = ["json:/dev/full".to_string(), format!("json:{}", other.display())];
    let (child, err) = start_run(&v, &outputs, "1");
    std::thread::sleep(Duration::from_millis(1500));
    if !tcpreplay(test, &v.send, &demo(), "5000") {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = wait_child(child, err, Duration::from_secs(30));
        return;
    }
    std::thread::sleep(Duration::from_millis(500));
    // Still capturing: SIGTERM ends it as usual, with exit 0.
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let o = wait_child(child, err, Duration::from_secs(30));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stderr.contains("/dev/full") && o.stderr.contains("No space left on device"), "{}", o.stderr);
    let stats = final_stats(&o.stderr);
    let verdicts = stats["verdicts"].as_u64().unwrap();
    assert!(verdicts > 0, "no verdicts: were the packets captured? {}", o.stderr);
    let outs = stats["outputs"].as_array().unwrap();
    let (_, dropped) = sent_dropped(&outs[0]);
    assert!(dropped > 0, "the full output dropped nothing: {}", outs[0]);
    // The other output lost nothing.
    assert_eq!(sent_dropped(&outs[1]), (records(&stats), 0), "{}", outs[1]);
    eprintln!("full output: {}", outs[0]);
}

/// A capture of `flows` one-packet UDP flows (distinct source ports).
fn udp_flows_capture(path: &Path, flows: u32) {
    let mut c = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    c.extend(2u16.to_le_bytes());
    c.extend(4u16.to_le_bytes());
    c.extend([0; 8]);
    c.extend(65535u32.to_le_bytes());
    c.extend(1u32.to_le_bytes());
    for i in 0..flows {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x00, 0x45, 0, 0, 30];
        f.extend([(i >> 8) as u8, i as u8, 0, 0, 64, 17, 0, 0]);
        f.extend([10, 77, (i >> 14) as u8, 1, 10, 77, 0, 2]);
        f.extend((1024 + (i % 60000) as u16).to_be_bytes());
        f.extend(5353u16.to_be_bytes());
        f.extend([0, 10, 0, 0, 0xab, 0xcd]);
        let ts = 1_700_000_000u32 + i / 10_000;
        c.extend(ts.to_le_bytes());
        c.extend(((i % 10_000) * 100).to_le_bytes());
        c.extend((f.len() as u32).to_le_bytes());
        c.extend((f.len() as u32).to_le_bytes());
        c.extend(f);
    }
    std::fs::write(path, c).unwrap();
}

#[test]
fn an_output_nobody_reads_drops_and_counts_without_stalling_the_others() {
    let _g = serial();
    let test = "an_output_nobody_reads_drops_and_counts_without_stalling_the_others";
    let Some(v) = Veth::new(test, 'b') else { return };
    if find_tool("tcpreplay").is_none() {
        return skipped(test, "no tcpreplay (apt-get install tcpreplay)");
    }
    // A FIFO whose reader opens it and never reads: writes block once the
    // pipe's 64 KiB are full, and the output's queue (8192 verdicts) fills.
    let fifo = tmp("stuck.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&fifo).unwrap();
            std::thread::sleep(Duration::from_secs(40));
            drop(f);
        })
    };
    let good = tmp("stuck-other.jsonl");
    let _ = std::fs::remove_file(&good);
    let outputs = [format!("json:{}", fifo.display()), format!("json:{}", good.display())];
    let (child, err) = start_run(&v, &outputs, "0");
    let pcap = tmp("udp-flows.pcap");
    udp_flows_capture(&pcap, 12_000);
    assert!(tcpreplay(test, &v.send, pcap.to_str().unwrap(), "20000"));
    std::thread::sleep(Duration::from_millis(500));
    // SIGTERM: every open flow ends now, 12 000 end verdicts at once.
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let o = wait_child(child, err, Duration::from_secs(30));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let stats = final_stats(&o.stderr);
    let verdicts = stats["verdicts"].as_u64().unwrap();
    assert!(verdicts > 10_000, "{verdicts} verdicts: were the packets captured? {}", o.stderr);
    let outs = stats["outputs"].as_array().unwrap();
    let records = records(&stats);
    let (sent, dropped) = sent_dropped(&outs[0]);
    assert!(dropped > 0, "the stuck output dropped nothing: {}", outs[0]);
    assert_eq!(sent + dropped, records, "stuck output: sent + dropped vs records: {}", outs[0]);
    assert!(outs[0]["stalls"].as_u64().unwrap() >= 1, "{}", outs[0]);
    // The other output lost nothing and has every record on disk.
    assert_eq!(sent_dropped(&outs[1]), (records, 0), "{}", outs[1]);
    assert_eq!(whole_lines(&good) as u64, records);
    // Each output is a stage that balances: the stuck one's drops failed.
    for (o, failed) in [(&outs[0], dropped), (&outs[1], 0)] {
        let n = |k: &str| o["stage"][k].as_u64().unwrap_or_else(|| panic!("no stage.{k}: {o}"));
        assert_eq!(n("received"), n("sent") + n("discarded") + n("failed"), "{o}");
        assert_eq!((n("sent"), n("failed")), (o["sent"].as_u64().unwrap(), failed), "{o}");
    }
    eprintln!("stuck output: {}", outs[0]);
    drop(reader);
}

#[test]
fn an_interface_that_disappears_flushes_and_exits_1() {
    let _g = serial();
    let test = "an_interface_that_disappears_flushes_and_exits_1";
    let Some(v) = Veth::new(test, 'c') else { return };
    let json = tmp("gone.jsonl");
    let _ = std::fs::remove_file(&json);
    let (child, err) = start_run(&v, &[format!("json:{}", json.display())], "0");
    if !tcpreplay(test, &v.send, &demo(), "5000") {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = wait_child(child, err, Duration::from_secs(30));
        return;
    }
    std::thread::sleep(Duration::from_millis(500));
    let deleted = Instant::now();
    v.delete();
    let o = wait_child(child, err, Duration::from_secs(20));
    let took = deleted.elapsed();
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains(&format!("capture on {} stopped", v.capture)), "{}", o.stderr);
    assert!(o.stderr.contains("open flows were flushed"), "{}", o.stderr);
    let stats = final_stats(&o.stderr);
    let verdicts = stats["verdicts"].as_u64().unwrap();
    assert!(verdicts > 0 && stats["packets"].as_u64().unwrap() > 0, "{}", o.stderr);
    // The flows open when the interface went were ended and classified, and reached the output.
    assert_eq!(whole_lines(&json) as u64, records(&stats));
    eprintln!("interface gone: exit 1 after {took:?}, {verdicts} verdicts flushed");
}
