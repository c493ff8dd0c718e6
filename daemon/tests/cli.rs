//! `tidewatchd` as users run it: exit codes, messages, verdict fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::VERDICT_FIELDS;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tidewatchd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidewatchd")).args(args).output().unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tidewatchd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Checks every line is a verdict with every field, or an incident; returns the verdicts.
pub fn parse_verdicts(stdout: &[u8]) -> Vec<serde_json::Value> {
    let text = String::from_utf8(stdout.to_vec()).unwrap();
    text.lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(matches!(v["event_type"].as_str(), Some("verdict" | "incident")), "{l}");
            v["event_type"] == "verdict"
        })
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            for f in VERDICT_FIELDS {
                assert!(v.get(f).is_some(), "verdict lacks `{f}`: {l}");
            }
            let ts = v["ts"].as_str().unwrap();
            assert!(ts.ends_with('Z') && ts.len() == 27, "ts not RFC 3339 with microseconds: {ts}");
            assert!(matches!(v["trigger"].as_str(), Some("early" | "end" | "host")));
            let detected = v["detected_at"].as_str().unwrap();
            // RFC 3339 strings of one length order as times do.
            assert!(detected.len() == 27 && detected >= ts, "detected_at {detected} before ts {ts}");
            v
        })
        .collect()
}

#[test]
fn replay_demo_writes_verdicts_and_a_summary() {
    let demo = repo().join("pcaps/demo.pcap");
    let o = tidewatchd(&["replay", demo.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let verdicts = parse_verdicts(&o.stdout);
    assert!(!verdicts.is_empty());
    let err = stderr(&o);
    for word in ["packets", "flows", "verdicts", "packets/s", "stdout"] {
        assert!(err.contains(word), "summary lacks {word}: {err}");
    }
    assert!(verdicts.iter().all(|v| v["model"].as_str().unwrap().starts_with("lab@")));
}

#[test]
fn replay_to_a_file_and_stats_json() {
    let out = tmp("verdicts.jsonl");
    let demo = repo().join("pcaps/demo.pcap");
    let spec = format!("json:{}", out.display());
    let o =
        tidewatchd(&["replay", demo.to_str().unwrap(), "--output", &spec, "--stats", "json", "--early-packets", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let verdicts = parse_verdicts(&std::fs::read(&out).unwrap());
    let last = stderr(&o).lines().last().unwrap().to_string();
    let stats: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(stats["verdicts"].as_u64().unwrap(), verdicts.len() as u64);
    let decoded = stats["decoded"].as_u64().unwrap();
    let dropped = stats["dropped"].as_u64().unwrap();
    assert_eq!(stats["packets"].as_u64().unwrap(), decoded + dropped);
    let early = verdicts.iter().filter(|v| v["trigger"] == "early").count();
    assert!(verdicts.iter().filter(|v| v["trigger"] == "early").all(|v| v["packets"] == 4));
    assert_eq!(early as u64, stats["verdicts_early"].as_u64().unwrap());
}

fn assert_usage_error(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    let err = stderr(o);
    assert!(err.contains(needle), "message lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let text = tmp("not-a-capture.txt");
    std::fs::write(&text, "hello, this is text\n".repeat(10)).unwrap();
    let empty = tmp("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let dir = std::env::temp_dir();
    assert_usage_error(&tidewatchd(&["replay", text.to_str().unwrap()]), "cannot open capture");
    assert_usage_error(&tidewatchd(&["replay", empty.to_str().unwrap()]), "empty");
    assert_usage_error(&tidewatchd(&["replay", dir.to_str().unwrap()]), "directory");
    assert_usage_error(&tidewatchd(&["replay", "/nonexistent/x.pcap"]), "No such file");
    assert_usage_error(&tidewatchd(&["replay", "--bogus-flag"]), "--bogus-flag");
    let demo = repo().join("pcaps/demo.pcap");
    let demo = demo.to_str().unwrap();
    assert_usage_error(&tidewatchd(&["replay", demo, "--output", "xml:foo"]), "unknown output");
    assert_usage_error(&tidewatchd(&["replay", demo, "--model", "/nonexistent/model.onnx"]), "no such file");
    assert_usage_error(&tidewatchd(&["replay", demo, "--model", text.to_str().unwrap()]), "not a loadable ONNX model");
}

#[test]
fn missing_onnx_runtime_names_the_fix() {
    let demo = repo().join("pcaps/demo.pcap");
    let o = Command::new(env!("CARGO_BIN_EXE_tidewatchd"))
        .args(["replay", demo.to_str().unwrap()])
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .output()
        .unwrap();
    assert_usage_error(&o, "make setup");
    let text = tmp("fake-ort.so");
    std::fs::write(&text, "not a library").unwrap();
    let o = tidewatchd(&["replay", demo.to_str().unwrap(), "--onnx-runtime", text.to_str().unwrap()]);
    assert_usage_error(&o, "cannot load ONNX Runtime");
}

#[test]
fn truncated_capture_is_a_counted_partial_read() {
    let demo = std::fs::read(repo().join("pcaps/demo.pcap")).unwrap();
    // Cut in the middle of a packet record, well past the file header.
    let cut = tmp("truncated.pcap");
    std::fs::write(&cut, &demo[..demo.len() / 2 + 7]).unwrap();
    let o = tidewatchd(&["replay", cut.to_str().unwrap(), "--stats", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("ended early"), "{}", stderr(&o));
    assert!(!parse_verdicts(&o.stdout).is_empty());
    // Cut inside the 24-byte file header: not a capture at all.
    let head = tmp("header-only.pcap");
    std::fs::write(&head, &demo[..10]).unwrap();
    assert_usage_error(&tidewatchd(&["replay", head.to_str().unwrap()]), "cannot open capture");
}

#[test]
fn model_info_prints_metadata_and_acceptance() {
    let model = repo().join("models/lab/model.onnx");
    let o = tidewatchd(&["model", "info", model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let schema = format!("tidewatch-flow v{} (91 features)", tidewatch::features::SCHEMA_VERSION);
    assert!(out.contains(&schema) && out.contains("accepted:       yes"), "{out}");
    assert!(out.contains("thresholds:     "), "{out}");
    assert!(out.contains("benign, scan, dos, bruteforce, exfil, c2"), "{out}");
}

#[test]
fn features_export_joins_labels() {
    let out = tmp("flows.csv");
    let demo = repo().join("pcaps/demo.pcap");
    let labels = repo().join("pcaps/demo.labels.csv");
    let o = tidewatchd(&[
        "features",
        demo.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(&out).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        &header[..10],
        ["flow_id", "trigger", "first_ts", "last_ts", "proto", "src_ip", "src_port", "dst_ip", "dst_port", "label"]
    );
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.schema.json", out.display())).unwrap()).unwrap();
    let names: Vec<&str> = schema["features"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(&header[10..], &names[..]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()));
    let labelled = rows.iter().filter(|r| !r[9].is_empty()).count();
    // Nearly every flow of the generated capture is in its label file.
    assert!(labelled * 100 >= rows.len() * 95, "{labelled} of {} rows labelled", rows.len());
    for class in ["benign", "scan", "dos", "bruteforce", "exfil", "c2"] {
        assert!(rows.iter().any(|r| r[9] == class), "no {class} row");
    }
}

/// `make install-files` into a staging DESTDIR, then the installed binary,
/// run from elsewhere with no ORT_DYLIB_PATH, finds its default model and
/// ONNX Runtime in PREFIX/share/tidewatch and PREFIX/lib/tidewatch.
#[test]
fn installed_binary_finds_its_model_and_runtime() {
    if Command::new("make").arg("--version").output().is_err() {
        eprintln!("SKIPPED installed_binary_finds_its_model_and_runtime: no make");
        return;
    }
    let dest = tmp("destdir");
    let _ = std::fs::remove_dir_all(&dest);
    let o = Command::new("make")
        .current_dir(repo())
        .args(["--no-print-directory", "install-files", "PREFIX=/opt/tw", "UNITDIR=/lib/systemd/system"])
        .arg(format!("DESTDIR={}", dest.display()))
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_tidewatchd")))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let root = |p: &str| dest.join(p.trim_start_matches('/'));
    for p in [
        "/opt/tw/bin/tidewatchd",
        "/opt/tw/share/tidewatch/models/lab/model.onnx",
        "/opt/tw/lib/tidewatch/libonnxruntime.so.1.31.1",
        "/etc/tidewatch/tidewatch.toml",
        "/lib/systemd/system/tidewatchd.service",
    ] {
        assert!(root(p).is_file(), "{p} not installed");
    }
    let unit = std::fs::read_to_string(root("/lib/systemd/system/tidewatchd.service")).unwrap();
    assert!(unit.contains("ExecStart=/opt/tw/bin/tidewatchd run") && !unit.contains("/usr/local/"), "{unit}");

    let out = tmp("installed-verdicts.jsonl");
    let o = Command::new(root("/opt/tw/bin/tidewatchd"))
        .current_dir(std::env::temp_dir())
        .env_remove("ORT_DYLIB_PATH")
        .args(["replay", repo().join("pcaps/demo.pcap").to_str().unwrap()])
        .arg("--output")
        .arg(format!("json:{}", out.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let verdicts = parse_verdicts(text.as_bytes());
    assert!(verdicts.len() > 100, "{}", verdicts.len());
    assert!(verdicts.iter().all(|v| v["model"].as_str().unwrap().starts_with("lab@")));
    let _ = std::fs::remove_dir_all(&dest);
}

/// `feedback` on an incident of a replay: one JSON line with the record,
/// and a suppress rule for its actor appended to a config that still parses.
#[test]
fn feedback_records_the_decision_and_can_suppress_the_actor() {
    let dir = std::env::temp_dir().join(format!("tidewatchd-feedback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("v.jsonl");
    let o = tidewatchd(&[
        "replay",
        repo().join("pcaps/demo.pcap").to_str().unwrap(),
        "--output",
        &format!("json:{}", json.display()),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let scan = std::fs::read_to_string(&json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event_type"] == "incident" && v["label"] == "scan")
        .unwrap();
    let id = scan["incident_id"].as_u64().unwrap().to_string();
    let config = dir.join("tidewatch.toml");
    std::fs::write(&config, "[capture]\ninterfaces = [\"eth1\"]\n").unwrap();
    let feedback = dir.join("feedback.jsonl");
    let args = [
        "feedback",
        "--file",
        feedback.to_str().unwrap(),
        "--incident-id",
        &id,
        "--decision",
        "false-positive",
        "--note",
        "our scanner",
        "--from",
        json.to_str().unwrap(),
        "--suppress-to",
        config.to_str().unwrap(),
        "--expires",
        "2030-01-01T00:00:00Z",
    ];
    let o = tidewatchd(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&feedback).unwrap().trim()).unwrap();
    assert_eq!(line["decision"], "false_positive");
    assert_eq!(line["incident_id"].to_string(), id);
    assert_eq!(line["record"]["label"], "scan");
    let text = std::fs::read_to_string(&config).unwrap();
    let src = scan["src_ip"].as_str().unwrap();
    assert!(text.contains(&format!("[[policy.suppress]]\nlabel = \"scan\"\nsrc = \"{src}\"\nexpires = ")), "{text}");
    // Confirmed needs no rule; a rule needs --from.
    // The capture is recorded by its absolute path, for training to export.
    let demo = repo().join("pcaps/demo.pcap");
    let o = tidewatchd(&[
        "feedback",
        "--file",
        feedback.to_str().unwrap(),
        "--flow-id",
        "7",
        "--decision",
        "confirmed",
        "--capture",
        demo.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let text = std::fs::read_to_string(&feedback).unwrap();
    assert_eq!(text.lines().count(), 2);
    let second: serde_json::Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(second["capture"], std::fs::canonicalize(&demo).unwrap().display().to_string());
    assert!(line.get("capture").is_none());
    let cfg = config.to_str().unwrap();
    let o = tidewatchd(&[
        "feedback",
        "--file",
        "/dev/null",
        "--flow-id",
        "7",
        "--decision",
        "false-positive",
        "--suppress-to",
        cfg,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --from"));
}

/// `flows` on a gzip-compressed capture read from standard input: every
/// HTTP transaction of the keep-alive connection is in the record.
#[test]
fn flows_from_stdin_compressed_carry_every_transaction() {
    use std::io::Write;
    let plain = std::fs::read(repo().join("pcaps/apps/http-keepalive.pcap")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidewatchd"))
        .args(["flows", "-", "--output", "json:-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&gz).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let flows: Vec<serde_json::Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let keep_alive = flows.iter().find(|f| f["dst_port"] == 80).unwrap_or_else(|| panic!("{flows:?}"));
    let http = &keep_alive["app"]["http"];
    assert_eq!(http["host"], "a.example", "{http}");
    assert_eq!(http["transaction_count"], 5, "{http}");
    let uris: Vec<&str> = http["transactions"].as_array().unwrap().iter().map(|t| t["uri"].as_str().unwrap()).collect();
    assert_eq!(uris, ["/img.png", "/api", "/x", "/chunked"]);
    assert_eq!(http["transactions"][3]["response_body_len"], 59, "{http}");
}

/// `replay --flow-records`: the JSON output carries a record of every ended
/// flow (`event_type` = `flow`, the fields of `flows`) beside the verdicts.
#[test]
fn replay_with_flow_records_writes_conn_log_beside_verdicts() {
    let demo = repo().join("pcaps/demo.pcap");
    let o = tidewatchd(&["replay", demo.to_str().unwrap(), "--flow-records", "--workers", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kind = |k: &str| lines.iter().filter(|l| l["event_type"] == k).count();
    let f = tidewatchd(&["flows", demo.to_str().unwrap(), "--workers", "1"]);
    assert!(f.status.success(), "{}", stderr(&f));
    let flows: Vec<serde_json::Value> =
        String::from_utf8(f.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(flows.iter().all(|r| r["event_type"] == "flow"));
    assert_eq!(kind("flow"), flows.len());
    assert!(kind("verdict") > 0 && kind("incident") > 0);
    // The same records as `flows` writes, field for field.
    let mut a: Vec<String> = lines.iter().filter(|l| l["event_type"] == "flow").map(|l| l.to_string()).collect();
    let mut b: Vec<String> = flows.iter().map(|l| l.to_string()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Syslog does not carry them unless asked.
    let bad = tidewatchd(&["replay", demo.to_str().unwrap(), "--syslog-events", "flows,bogus"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
