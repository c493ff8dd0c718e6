#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, one after the
# other, one libFuzzer process at a time (-workers=1).
#
#   bash fuzz/run.sh 20                  # smoke: `make fuzz-smoke` (part of `make test`)
#   bash fuzz/run.sh 600 decode          # ten minutes of one target
#   FUZZ_KEEP_GOING=1 bash fuzz/run.sh 14400    # hours: keeps going past crashes (fork mode),
#                                               # artifacts in fuzz/artifacts/<target>/
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`);
# says SKIPPED when either is missing. Seeds fuzz/corpus/ from the public
# capture corpus on first use (fuzz/seed.sh). The build has no sanitizer by
# default (the engine is safe Rust, and it is ~2x faster); set
# FUZZ_SANITIZER=address for ASan. Exits 1 if a target crashed; a crash
# input goes to fuzz/artifacts/<target>/ and, once understood, to
# engine/tests/regressions/<target>/ (see fuzz/README.md).
#
# Checks listed in fuzz/KNOWN_OPEN_CHECKS (open bugs already reported, with a
# regression input in engine/tests/regressions/KNOWN_OPEN) are not asserted,
# so that the run looks for new failures.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:?usage: run.sh SECONDS [TARGET...]}
shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(decode pcap_file flow_table reassembly defrag app)
sanitizer=${FUZZ_SANITIZER:-none}
# FUZZ_CODEGEN_UNITS=16 builds about 40 % faster (a little slower fuzzing): for smoke runs.
cgu=()
[[ -z ${FUZZ_CODEGEN_UNITS:-} ]] || cgu=(--codegen-units "$FUZZ_CODEGEN_UNITS")

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
    exit 0
fi
cd "$here"
for t in "${targets[@]}"; do [[ -d corpus/$t ]] || { bash "$here/seed.sh"; break; }; done
export TIDEWATCH_FUZZ_SKIP_CHECKS
TIDEWATCH_FUZZ_SKIP_CHECKS=$(sed -e 's/#.*//' -e '/^\s*$/d' "$here/KNOWN_OPEN_CHECKS" 2>/dev/null | tr '\n' ' ' || true)
started=$(date +%s)
cargo +nightly fuzz build -O -s "$sanitizer" "${cgu[@]}"
echo "fuzz: built in $(( $(date +%s) - started )) s"
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    opts=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
          -artifact_prefix="artifacts/$t/")
    if [[ -n ${FUZZ_KEEP_GOING:-} ]]; then
        opts+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    else
        : # one process (no -jobs/-workers: its output would go to fuzz-N.log)
    fi
    log="artifacts/$t.log"
    echo "fuzz: $t for ${seconds} s (log: fuzz/$log)"
    if cargo +nightly fuzz run -O -s "$sanitizer" "${cgu[@]}" "$t" "corpus/$t" -- "${opts[@]}" >"$log" 2>&1; then
        status=ok
    else
        status=CRASHED
        failed+=("$t")
    fi
    execs=$(grep -Eo '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
    final=$(grep -Eo 'stat::number_of_executed_units: [0-9]+' "$log" | tail -n 1 | grep -Eo '[0-9]+$' || true)
    echo "fuzz: $t: $status, ${final:-${execs:-0}} executions, corpus $(find "corpus/$t" -type f | wc -l) inputs"
    if [[ $status != ok ]]; then
        grep -E "panicked at|^SUMMARY|Test unit written" "$log" | head -n 5 >&2 || true
    fi
done
echo "fuzz: done in $(( $(date +%s) - started )) s"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
