#!/usr/bin/env bash
# The lab-trained model, end to end, in one command (`make model-lab`):
#   1. lab captures for the training and test seeds (pcaps/lab/make-lab.sh; root; ~3 min per
#      seed, skipped when build/lab/lab-seedN.pcap exists),
#   2. feature rows exported by the engine, once per K (`tidewatchd features --early-packets K`),
#   3. training (models/train/train.py on end rows + early rows of every K; optionally with the
#      synthetic corpus of pcaps/generate.py mixed in), ONNX export, check in ONNX Runtime,
#   4. evaluation on the unseen test seeds per K and at flow end, the hold-out-tool experiment
#      (a second model trained without HOLDOUT's tool variants, tested on them), the public
#      attack captures (../shared/pcaps/public/attacks, via `tidewatchd replay`), and the card
#      models/$NAME/MODEL_CARD.md + metrics.json + lab-metrics.json.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
LAB=${LAB:-build/lab}
FEAT=${FEAT:-build/lab/features}
TRAIN_SEEDS=${TRAIN_SEEDS:-"1 2 3 4 5 6"}
TEST_SEEDS=${TEST_SEEDS:-"11 12 13"}
KS=${KS:-"4 8 16"}
NAME=${NAME:-lab}
VERSION=${VERSION:-1.1.0}
HOLDOUT=${HOLDOUT:-"scan/nmap-sV bruteforce/hydra-http-get"}
# Mix in the synthetic corpus (pcaps/generate.py seeds) so one model serves both kinds of traffic.
SYNTH_TRAIN=${SYNTH_TRAIN-"101 102 103 104"}
SYNTH_TEST=${SYNTH_TEST-"201 202"}
TRAIN_ARGS=${TRAIN_ARGS-"--estimator mlp --hidden 64,32"}
SHARED_PCAPS=${SHARED_PCAPS:-../shared/pcaps}
VENV=${VENV:-.venv-train}
OUTDIR=models/$NAME
NOTE=${NOTE-"**Status:** shipped as \`models/$NAME/\`, not as the bundled model: \`models/baseline/\` stays the default of \`make demo\` and \`tidewatchd replay\`, because this model does not meet every target below (use it with \`--model models/$NAME/model.onnx\`). It serves early rows (any K) and end rows alike; \`tidewatchd replay --early-packets K --final-verdicts changed\` gives an early verdict and a final one only where it changes."}
t0=$(date +%s)
stamp() { echo "build-lab: $* ($(( $(date +%s) - t0 )) s)" >&2; }

if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install --quiet -r models/train/requirements.txt
# TW=path/to/tidewatchd uses that binary as is (e.g. one built from another checkout).
if [ -z "${TW:-}" ]; then
    cargo build --release -p tidewatchd
    TW=./target/release/tidewatchd
fi
[ -f .ort/libonnxruntime.so.1.31.1 ] || bash scripts/setup.sh

for s in $TRAIN_SEEDS $TEST_SEEDS; do
    [ -f "$LAB/lab-seed$s.labels.csv" ] || bash pcaps/lab/make-lab.sh --seed "$s" --out "$LAB"
done
stamp "captures ready"

mkdir -p "$FEAT" "$OUTDIR"
for s in $TRAIN_SEEDS $TEST_SEEDS; do
    for k in $KS; do
        "$TW" features "$LAB/lab-seed$s.pcap" --labels "$LAB/lab-seed$s.labels.csv" \
            --early-packets "$k" -o "$FEAT/seed$s-k$k.csv" 2>/dev/null
    done
done
synth_train=(); synth_test=()
for s in $SYNTH_TRAIN $SYNTH_TEST; do
    [ -f "$FEAT/synth-seed$s.pcap" ] || python3 pcaps/generate.py labeled --seed "$s" --out "$FEAT" >/dev/null 2>&1
    mv -f "$FEAT/lab-seed$s.pcap" "$FEAT/synth-seed$s.pcap" 2>/dev/null || true
    mv -f "$FEAT/lab-seed$s.labels.csv" "$FEAT/synth-seed$s.labels.csv" 2>/dev/null || true
    "$TW" features "$FEAT/synth-seed$s.pcap" --labels "$FEAT/synth-seed$s.labels.csv" -o "$FEAT/synth$s.csv" 2>/dev/null
done
for s in $SYNTH_TRAIN; do synth_train+=("$FEAT/synth$s.csv"); done
for s in $SYNTH_TEST; do synth_test+=("$FEAT/synth$s.csv"); done
"$TW" schema > "$FEAT/schema.json"
stamp "features exported (schema $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["name"], "v%s" % d["version"], len(d["features"]), "features")' "$FEAT/schema.json"))"

PY="$VENV/bin/python"
read -r -a ks <<<"$KS"
read -r -a train_seeds <<<"$TRAIN_SEEDS"
read -r -a test_seeds <<<"$TEST_SEEDS"
read -r -a train_args <<<"$TRAIN_ARGS"
ho_args=(); for v in $HOLDOUT; do ho_args+=(--exclude-variant "$v"); done
ev_ho=(); for v in $HOLDOUT; do ev_ho+=(--holdout-variant "$v"); done
"$PY" models/train/lab.py prepare --feat-dir "$FEAT" --lab-dir "$LAB" --seeds "${train_seeds[@]}" --ks "${ks[@]}" \
    --out "$FEAT/train.csv" --extra "${synth_train[@]}"
"$PY" models/train/lab.py prepare --feat-dir "$FEAT" --lab-dir "$LAB" --seeds "${test_seeds[@]}" --ks "${ks[@]}" \
    --out "$FEAT/test.csv"
"$PY" models/train/lab.py prepare --feat-dir "$FEAT" --lab-dir "$LAB" --seeds "${train_seeds[@]}" --ks "${ks[@]}" \
    --out "$FEAT/train-holdout.csv" --extra "${synth_train[@]}" "${ho_args[@]}"
"$PY" models/train/train.py --train "$FEAT/train.csv" --test "$FEAT/test.csv" "${train_args[@]}" \
    --name "$NAME" --version "$VERSION" --out "$OUTDIR/model.onnx" --metrics-out "$OUTDIR/metrics.json" \
    > "$FEAT/train.log"
stamp "model trained: $OUTDIR/model.onnx"
"$PY" models/train/train.py --train "$FEAT/train-holdout.csv" --test "$FEAT/test.csv" "${train_args[@]}" \
    --name "$NAME-holdout" --version "$VERSION" --out "$FEAT/holdout.onnx" --metrics-out "$FEAT/holdout.metrics.json" \
    --bench-seconds 0 > "$FEAT/train-holdout.log"
stamp "hold-out model trained"
"$TW" model info "$OUTDIR/model.onnx" >/dev/null
synth_note=""
[ -n "$SYNTH_TRAIN" ] && synth_note=" Mixed in: synthetic captures of pcaps/generate.py, seeds $SYNTH_TRAIN (the traffic of \`make demo\`), so one model serves both."
"$PY" models/train/lab.py evaluate --model "$OUTDIR/model.onnx" --feat-dir "$FEAT" --lab-dir "$LAB" \
    --seeds "${test_seeds[@]}" --ks "${ks[@]}" --train-metrics "$OUTDIR/metrics.json" \
    --holdout-model "$FEAT/holdout.onnx" "${ev_ho[@]}" \
    ${SYNTH_TEST:+--synthetic-test "${synth_test[@]}"} \
    --public-tsv models/train/public_attacks.tsv --public-dir "$SHARED_PCAPS/public/attacks" \
    --tidewatchd "$TW" --work "$LAB/public" \
    --metrics-out "$OUTDIR/lab-metrics.json" --card "$OUTDIR/MODEL_CARD.md" \
    --command "make model-lab   # = bash models/train/build-lab.sh (NAME=$NAME VERSION=$VERSION TRAIN_SEEDS=\"$TRAIN_SEEDS\" TEST_SEEDS=\"$TEST_SEEDS\" KS=\"$KS\" HOLDOUT=\"$HOLDOUT\" SYNTH_TRAIN=\"$SYNTH_TRAIN\" TRAIN_ARGS=\"$TRAIN_ARGS\")" \
    --data-text "Lab captures (pcaps/lab/make-lab.sh, 170 s of activity each): training seeds $TRAIN_SEEDS, test seeds $TEST_SEEDS. Each seed draws a new /24 in a private range, which namespace plays which role, service ports, timing and jitter, tool options (nmap -sS/-sT/-sU/-sV/slow with random port sets, timing templates and retries; hping3 SYN/UDP/ICMP floods with random counts, rates, sizes and windows; slowhttptest slowloris/slow body; ab GET floods; hydra ssh/http-get/ftp with per-seed word lists and task counts; DNS tunnelling with dig in base32/hex/base64 labels of random length and query type, and a real iodine tunnel (record type, encoding, interval, direct or through the resolver, which forwards the tunnel domain to the attacker's server — those forwarded queries are exfil too); curl beacons over HTTP/HTTPS with random interval, jitter and POSTed results, from a host that also browses), page sets and payloads; about half the servers drop (or reject) ports that are not their service, via nftables. Benign: 6 clients browsing nginx over HTTP and HTTPS (single requests and keep-alive sessions, wget mirrors), DNS lookups on dnsmasq, SSH commands, scp up/downloads, rate-limited bulk downloads, anonymous FTP, idle SSH/TLS keep-alive connections.$synth_note" \
    --blind-spots "$(cat models/train/lab-blind-spots.md)" --note "$NOTE"
stamp "evaluated; card $OUTDIR/MODEL_CARD.md"
