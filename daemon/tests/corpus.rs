//! Corpus sweep: `tidewatchd replay` and `tidewatchd flows` on every
//! capture of the public corpus (`../shared/pcaps/public`, over a thousand
//! files, many malformed on purpose): exit 0, or 2 with a one-line reason
//! for a file libpcap cannot open; never a panic; the accounting identity
//! holds (packets = decoded + fragments + drops by reason, and no datagram
//! left pending); every verdict line carries every field; every flow gets
//! exactly one flow record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::VERDICT_FIELDS;

/// Fields every `tidewatchd flows` record has (the issue names them; scripts parse them).
const FLOW_FIELDS: &[&str] = &[
    "flow_id",
    "first_ts",
    "last_ts",
    "proto",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "fwd_packets",
    "bwd_packets",
    "fwd_bytes",
    "bwd_bytes",
    "fwd_payload_bytes",
    "bwd_payload_bytes",
    "fwd_gaps",
    "bwd_gaps",
    "app_proto",
    "app",
];

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("TIDEWATCH_SHARED_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps"));
    if dir.join("public/MANIFEST.tsv").is_file() {
        Some(dir.join("public"))
    } else {
        eprintln!(
            "SKIPPED corpus sweep: public capture corpus not found at {} (set TIDEWATCH_SHARED_PCAPS)",
            dir.display()
        );
        None
    }
}

/// Checks one file with both commands; returns Err(description) on any violation, Ok(exit code) otherwise.
fn sweep_one(file: &Path) -> Result<i32, String> {
    let code = sweep_command(file, "replay")?;
    let flows_code = sweep_command(file, "flows")?;
    if code != flows_code {
        return Err(format!("replay exits {code} but flows exits {flows_code}"));
    }
    Ok(code)
}

fn sweep_command(file: &Path, command: &str) -> Result<i32, String> {
    let o = Command::new(env!("CARGO_BIN_EXE_tidewatchd"))
        .arg(command)
        .arg(file)
        .args(["--stats", "json"])
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
        return Err(format!("panic: {err}"));
    }
    match o.status.code() {
        Some(0) => {}
        Some(2) => {
            let lines: Vec<&str> = err.lines().collect();
            if lines.len() != 1 || !lines[0].starts_with("tidewatchd: error: cannot open capture") {
                return Err(format!("exit 2 without a one-line reason: {err}"));
            }
            return Ok(2);
        }
        other => return Err(format!("exit {other:?}: {err}")),
    }
    let stats: serde_json::Value =
        err.lines().last().and_then(|l| serde_json::from_str(l).ok()).ok_or_else(|| format!("no stats JSON: {err}"))?;
    let n = |k: &str| stats[k].as_u64().unwrap_or(u64::MAX);
    if n("packets") != n("decoded") + n("fragments") + n("dropped") {
        return Err(format!("accounting: {stats}"));
    }
    if stats["defrag"]["fragments"].as_u64() != Some(n("fragments")) || stats["defrag"]["pending"].as_u64() != Some(0) {
        return Err(format!("defrag accounting: {stats}"));
    }
    let drops: u64 = stats["drops"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    if drops != n("dropped") {
        return Err(format!("drops by reason do not add up: {stats}"));
    }
    let (fields, expected): (&[&str], u64) =
        if command == "flows" { (FLOW_FIELDS, n("flows")) } else { (VERDICT_FIELDS, n("verdicts")) };
    let mut lines = 0u64;
    for l in String::from_utf8_lossy(&o.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(l).map_err(|e| format!("bad JSON {e}: {l}"))?;
        if command != "flows" && v["event_type"] == "incident" {
            continue; // checked by the engine's incident tests
        }
        if let Some(f) = fields.iter().find(|f| v.get(**f).is_none()) {
            return Err(format!("{command} record lacks {f}: {l}"));
        }
        lines += 1;
    }
    if lines != expected {
        return Err(format!("{lines} {command} lines but stats say {expected}"));
    }
    Ok(0)
}

#[test]
fn replay_every_public_capture() {
    let Some(public) = shared() else { return };
    let manifest = std::fs::read_to_string(public.join("MANIFEST.tsv")).unwrap();
    let files: Vec<PathBuf> =
        manifest.lines().skip(1).filter_map(|l| l.split('\t').next()).map(|f| public.join(f)).collect();
    assert!(files.len() > 1000, "manifest lists only {} files", files.len());
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let unopenable = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(f) = files.get(i) else { break };
                match sweep_one(f) {
                    Ok(2) => {
                        unopenable.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => failures.lock().unwrap().push(format!("{}: {e}", f.display())),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "corpus sweep: {} files, {} unopenable by libpcap (exit 2), {} failures",
        files.len(),
        unopenable.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
