//! Replays every input the fuzzers ever broke the engine with
//! (`engine/tests/regressions/<target>/`), through the same harness the fuzz
//! targets use (`fuzz/src/harness.rs`), so a fixed crash stays fixed.
//!
//! Inputs listed in `engine/tests/regressions/KNOWN_OPEN` still fail: they are
//! skipped here (and named on stderr) and replayed by the ignored test
//! `known_open_inputs_still_fail`, which fails once one of them is fixed so
//! that it can be moved out of the list. Adding an input: copy the fuzzer's
//! artifact to `regressions/<target>/<short-name>` (see `fuzz/README.md`).
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used, dead_code)]

#[path = "../../fuzz/src/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

const TARGETS: [&str; 6] = ["decode", "pcap_file", "flow_table", "reassembly", "defrag", "app"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions")
}

/// `target/name` of the inputs known to fail still.
fn known_open() -> Vec<String> {
    let list = std::fs::read_to_string(dir().join("KNOWN_OPEN")).unwrap_or_default();
    list.lines().map(|l| l.split('#').next().unwrap_or("").trim().to_string()).filter(|l| !l.is_empty()).collect()
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir().join(target))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn replay(target: &str, path: &Path) {
    let data = std::fs::read(path).unwrap();
    match target {
        "decode" => harness::decode_input(&data),
        "pcap_file" => {
            let scratch = std::env::temp_dir().join(format!(
                "tidewatch-regression-{}-{}.pcap",
                std::process::id(),
                path.file_name().unwrap().to_string_lossy()
            ));
            harness::pcap_file(&data, &scratch);
            let _ = std::fs::remove_file(scratch);
        }
        "flow_table" => harness::flow_table(&data),
        "reassembly" => harness::reassembly(&data),
        "defrag" => harness::defrag(&data),
        "app" => harness::app(&data),
        other => panic!("no target {other}"),
    }
}

fn name(target: &str, path: &Path) -> String {
    format!("{target}/{}", path.file_name().unwrap().to_string_lossy())
}

#[test]
fn fuzz_regressions_pass() {
    let open = known_open();
    let mut ran = 0;
    for target in TARGETS {
        for path in inputs(target) {
            let n = name(target, &path);
            if open.contains(&n) {
                eprintln!("regressions: {n} is a KNOWN OPEN failure, skipped (see tests/regressions/KNOWN_OPEN)");
                continue;
            }
            let outcome = std::panic::catch_unwind(|| replay(target, &path));
            assert!(outcome.is_ok(), "fuzz regression input {n} fails again");
            ran += 1;
        }
    }
    eprintln!("regressions: {ran} inputs replayed, {} known open", open.len());
}

#[test]
#[ignore = "inputs in KNOWN_OPEN: fails once one is fixed (then move it out of the list)"]
fn known_open_inputs_still_fail() {
    let mut fixed = Vec::new();
    for n in known_open() {
        let (target, file) = n.split_once('/').unwrap();
        let path = dir().join(target).join(file);
        assert!(path.is_file(), "KNOWN_OPEN names {n}, which does not exist");
        if std::panic::catch_unwind(|| replay(target, &path)).is_ok() {
            fixed.push(n);
        }
    }
    assert!(fixed.is_empty(), "fixed now, move out of KNOWN_OPEN: {fixed:?}");
}
