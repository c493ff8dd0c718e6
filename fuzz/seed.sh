#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets (fuzz/corpus/<target>/,
# git-ignored: never commit them) from the public capture corpus.
#   bash fuzz/seed.sh [PCAP_DIR]     default: $TIDEWATCH_SHARED_PCAPS/public or ../shared/pcaps/public
# Without the corpus it says so and leaves the fuzzers to start from nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=${1:-${TIDEWATCH_SHARED_PCAPS:-$here/../../shared/pcaps}/public}
if [[ ! -d $src ]]; then
    echo "seed: SKIPPED: no capture corpus at $src; the fuzzers start from empty corpora" >&2
    mkdir -p "$here"/corpus/{decode,pcap_file,flow_table,reassembly,defrag,app}
    exit 0
fi
python3 "$here/seed.py" "$src" "$here/corpus"
