#!/usr/bin/env bash
# Peer comparison: Tidewatch vs nfstream, tshark and flowscope on one capture.
#
#   benches/peers/compare.sh FILE [--runs N] [--nfstream-dissections K]
#
# Installs what is missing, idempotently: the venv .venv-peers/ with the
# pinned nfstream (requirements.txt), tshark (apt-get), the flowscope peer
# (its own Cargo project, built into /tmp/peers-target). A peer that cannot
# be installed or built is skipped with the reason printed; Tidewatch is
# required. Prints one table and writes it as JSON to build/peers.json.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$ROOT/.venv-peers"
PEERS_TARGET="${PEERS_TARGET:-/tmp/peers-target}"
FS_BIN="$PEERS_TARGET/release/flowscope-peer"

usage() { echo "usage: $0 FILE [--runs N] [--nfstream-dissections K]" >&2; exit 2; }
[ $# -ge 1 ] || usage
FILE="$1"; shift
RUNS=3
NFD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS="${2:?}"; shift 2 ;;
    --runs=*) RUNS="${1#*=}"; shift ;;
    --nfstream-dissections) NFD="${2:?}"; shift 2 ;;
    *) usage ;;
  esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || usage
[ -f "$FILE" ] || { echo "compare: no such capture: $FILE" >&2; exit 2; }
FILE="$(cd "$(dirname "$FILE")" && pwd)/$(basename "$FILE")"
log() { echo "compare: $*" >&2; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# --- Tidewatch (required) ----------------------------------------------------
if [ ! -x "$ROOT/target/release/tidewatchd" ]; then
  log "target/release/tidewatchd missing: building it"
  (cd "$ROOT" && cargo build --release -p tidewatchd)
fi
if [ ! -e "$ROOT/.ort/libonnxruntime.so.1.31.1" ] && [ -z "${ORT_DYLIB_PATH:-}" ]; then
  log "ONNX Runtime missing (.ort/): installing it with scripts/setup.sh"
  (cd "$ROOT" && bash scripts/setup.sh) >&2
fi

# --- tshark ------------------------------------------------------------------
if ! command -v tshark >/dev/null || ! command -v capinfos >/dev/null; then
  log "installing tshark (apt-get)"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections || true
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tshark; } >&2 \
    || export PEER_SKIP_TSHARK="apt-get install tshark failed"
fi

# --- nfstream (venv, pinned) -------------------------------------------------
want_nf="$(grep -E '^nfstream==' "$HERE/requirements.txt" | cut -d= -f3)"
have_nf() { "$VENV/bin/python" -c "import nfstream,sys; sys.exit(nfstream.__version__ != '$want_nf')" 2>/dev/null; }
if ! have_nf; then
  PY="$(command -v python3.11 || command -v python3)"
  log "installing nfstream==$want_nf into .venv-peers ($("$PY" --version))"
  if { [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"; } \
     && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2 \
     && have_nf; then :; else
    export PEER_SKIP_NFSTREAM="pip install -r benches/peers/requirements.txt failed (see above)"
  fi
fi

# --- flowscope peer (own Cargo project, own target dir) ------------------------
if ! command -v cargo >/dev/null; then
  export PEER_SKIP_FLOWSCOPE="cargo not found"
else
  log "building the flowscope peer (no-op when up to date)"
  if ! CARGO_TARGET_DIR="$PEERS_TARGET" cargo build --release --quiet \
        --manifest-path "$HERE/flowscope/Cargo.toml" 2>"$PEERS_TARGET.build.log"; then
    cat "$PEERS_TARGET.build.log" >&2
    export PEER_SKIP_FLOWSCOPE="flowscope-peer does not build: $(grep -m1 -E '^error' "$PEERS_TARGET.build.log" || tail -n1 "$PEERS_TARGET.build.log")"
  fi
fi

exec python3 "$HERE/run_peers.py" "$FILE" --runs "$RUNS" --nfstream-dissections "$NFD" \
  --tidewatchd "$ROOT/target/release/tidewatchd" --venv-python "$VENV/bin/python" \
  --flowscope-bin "$FS_BIN" --json-out "$ROOT/build/peers.json"
