#!/usr/bin/env bash
# Installs what Tidewatch needs, idempotently: libpcap (apt), ONNX Runtime's
# shared library from the pinned PyPI wheel into .ort/, and with --test the
# tools the tests use (tshark, rsyslog, tcpreplay, iproute2, ethtool, prometheus for a real scrape;
# pytest and ruff for `make test-python`). Safe to run again: it skips what is present.
set -euo pipefail

ORT_VERSION=1.31.1
PYTEST_VERSION=9.0.3   # pip only: Debian's python3 gets its python3-pytest package
RUFF_VERSION=0.17.5
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ORT_DIR="$ROOT/.ort"
ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

say() { echo "setup: $*" >&2; }

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} with apt-get"
    if [ $apt_updated -eq 0 ]; then
        sudo_if_needed apt-get update -qq
        apt_updated=1
    fi
    # tshark asks whether non-root users may capture: answer no, non-interactively.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | sudo_if_needed debconf-set-selections 2>/dev/null || true
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install libpcap-dev pkg-config
[ $want_test -eq 1 ] && apt_install tshark rsyslog tcpreplay iproute2 ethtool prometheus

# Python test tools, for the python3 on PATH (which need not be Debian's own).
py_has() { python3 -c "import $1" >/dev/null 2>&1; }
py_is_debian() { [ "$(python3 -c 'import sys; print(sys.prefix)' 2>/dev/null)" = /usr ]; }
pip_install() {
    say "installing $* with pip"
    py_has pip || apt_install python3-pip
    local flags=(--quiet --disable-pip-version-check --root-user-action=ignore)
    # Debian's own python3 refuses pip outside a venv (PEP 668) unless told.
    if python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
        flags+=(--break-system-packages)
    fi
    python3 -m pip install "${flags[@]}" "$@"
}
if [ $want_test -eq 1 ]; then
    if ! py_has pytest; then
        if py_is_debian; then apt_install python3-pytest; else pip_install "pytest==$PYTEST_VERSION"; fi
    fi
    if ! python3 -m ruff --version 2>/dev/null | grep -qx "ruff $RUFF_VERSION"; then
        pip_install "ruff==$RUFF_VERSION"
    fi
fi

# The bounded fuzz run of `make test` needs cargo-fuzz (and the nightly
# toolchain, which rustup provides here; without it the run says SKIPPED).
if [ $want_test -eq 1 ] && ! command -v cargo-fuzz >/dev/null 2>&1 && rustup toolchain list 2>/dev/null | grep -q nightly; then
    say "installing cargo-fuzz from crates.io"
    cargo install --quiet --locked cargo-fuzz
fi

if [ ! -f "$ORT_LIB" ]; then
    say "fetching onnxruntime==$ORT_VERSION from PyPI into .ort/"
    mkdir -p "$ORT_DIR/wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$ORT_DIR/wheel" "onnxruntime==$ORT_VERSION"
    python3 - "$ORT_DIR" "$ORT_VERSION" <<'PY'
import glob, shutil, sys, zipfile
ort_dir, version = sys.argv[1], sys.argv[2]
wheels = glob.glob(f"{ort_dir}/wheel/onnxruntime-{version}-*.whl")
if not wheels:
    sys.exit(f"setup: no onnxruntime {version} wheel was downloaded")
member = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(f"{ort_dir}/libonnxruntime.so.{version}.part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    mv "$ORT_LIB.part" "$ORT_LIB"
    rm -rf "$ORT_DIR/wheel"
fi
say "ready (ONNX Runtime: ${ORT_LIB#$ROOT/})"
