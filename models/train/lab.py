#!/usr/bin/env python3
"""Data preparation, evaluation and model card for the lab-trained model (models/train/build-lab.sh).

    lab.py prepare  --feat-dir D --lab-dir L --seeds 1 2 --ks 4 8 16 --out D/train.csv
                    [--exclude-variant scan/nmap-sV ...] [--extra CSV ...]
    lab.py evaluate --model M.onnx --feat-dir D --lab-dir L --seeds 11 12 --ks 4 8 16
                    --train-metrics M.metrics.json [--holdout-model H.onnx --holdout-variant ...]
                    [--public-tsv T --public-dir P --tidewatchd BIN] [--synthetic-test CSV ...]
                    --metrics-out J --card C --command CMD

Feature rows come from `tidewatchd features` only (one export per K: its `early` rows
are the K-packet rows, its `end` rows the same for every K). `prepare` writes one
training CSV (end rows once, early rows of every K) in train.py's input format;
rows are joined to the lab's flows.csv (tool, variant) by direction-free 5-tuple
and start time, to leave chosen tool variants out. `evaluate` runs the exported
ONNX model in ONNX Runtime per K and at flow end, the hold-out-tool experiment,
the public attack captures through `tidewatchd replay`, and writes metrics + card.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402

LABELS = T.LABELS
NMETA = len(T.META_COLUMNS)
SLACK = 2.0


def feat_path(feat_dir, seed, k):
    return os.path.join(feat_dir, f"seed{seed}-k{k}.csv")


class Variants:
    """(label, variant) of a feature row, from the lab's flows.csv."""

    def __init__(self, lab_dir, seed):
        self.map = collections.defaultdict(list)
        path = os.path.join(lab_dir, f"lab-seed{seed}.flows.csv")
        for r in csv.DictReader(open(path)):
            a, b = (r["src_ip"], int(r["src_port"])), (r["dst_ip"], int(r["dst_port"]))
            key = (r["proto"],) + ((a, b) if a <= b else (b, a))
            self.map[key].append((float(r["first_ts"]), float(r["last_ts"]), r["variant"]))

    def of(self, row):
        a, b = (row[5], int(row[6])), (row[7], int(row[8]))
        key = (row[4],) + ((a, b) if a <= b else (b, a))
        t = float(row[2])
        best = None
        for first, last, v in self.map.get(key, ()):
            if first - SLACK <= t <= last + SLACK:
                d = abs(first - t)
                if best is None or d < best[0]:
                    best = (d, v)
        return best[1] if best else ""


def read_rows(path):
    with open(path, newline="") as f:
        rd = csv.reader(f)
        header = next(rd)
        return header, list(rd)


def prepare(args):
    header = None
    out_rows = []
    excluded = collections.Counter()
    excl = set(args.exclude_variant or [])
    for seed in args.seeds:
        var = Variants(args.lab_dir, seed) if excl else None
        for i, k in enumerate(args.ks):
            h, rows = read_rows(feat_path(args.feat_dir, seed, k))
            if header is None:
                header = h
                schema_src = feat_path(args.feat_dir, seed, k) + ".schema.json"
            elif h != header:
                raise SystemExit(f"{feat_path(args.feat_dir, seed, k)}: header differs")
            for r in rows:
                if r[1] == "end" and i != 0:
                    continue      # end rows are the same in every export: take them once
                if not r[9]:
                    continue
                if var is not None:
                    v = var.of(r)
                    if f"{r[9]}/{v}" in excl:
                        excluded[f"{r[9]}/{v}/{r[1]}"] += 1
                        continue
                r[0] = f"s{seed}k{k}-{r[0]}"   # flow ids stay unique across exports (grouped splits)
                out_rows.append(r)
    for extra in args.extra or []:
        h, rows = read_rows(extra)
        if h != header:
            raise SystemExit(f"{extra}: header differs from the lab exports")
        for r in rows:
            if r[9]:
                r[0] = f"x{os.path.basename(extra)}-{r[0]}"
                out_rows.append(r)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(out_rows)
    shutil.copy(schema_src, args.out + ".schema.json")
    c = collections.Counter((r[1], r[9]) for r in out_rows)
    print(f"prepare: {args.out}: {len(out_rows)} rows; " +
          ", ".join(f"{t}/{l}={n}" for (t, l), n in sorted(c.items())) +
          (f"; excluded {dict(excluded)}" if excluded else ""), file=sys.stderr)


# --------------------------------------------------------------------------- evaluate

def load_model(path):
    import onnx
    m = onnx.load(path)
    meta = {p.key: p.value for p in m.metadata_props}
    sess = T.ort_session(open(path, "rb").read())
    return sess, meta


def predict(sess, X):
    if len(X) == 0:
        return np.zeros(0, dtype=np.int64)
    return sess.run(None, {T.INPUT_NAME: X})[0].astype(np.int64)


def rows_xy(rows, n_feat):
    X = np.asarray([[float(v) for v in r[NMETA:NMETA + n_feat]] for r in rows], dtype=np.float32).reshape(-1, n_feat)
    y = np.asarray([T.LABEL_INDEX[r[9]] for r in rows], dtype=np.int64)
    return X, y


def test_sets(args, n_feat):
    """{'K=4': rows, ..., 'end': rows} of labelled test rows, each row with its variant."""
    sets = collections.OrderedDict()
    for k in args.ks:
        sets[f"K={k}"] = []
    sets["end"] = []
    for seed in args.seeds:
        var = Variants(args.lab_dir, seed)
        for i, k in enumerate(args.ks):
            _, rows = read_rows(feat_path(args.feat_dir, seed, k))
            for r in rows:
                if not r[9]:
                    continue
                if r[1] == "early":
                    sets[f"K={k}"].append(r + [var.of(r)])
                elif i == 0:
                    sets["end"].append(r + [var.of(r)])
    return sets


def md_eval(m, title):
    out = [f"**{title}** — {m['rows']:,} rows, macro-F1 **{m['macro_f1']:.3f}** "
           f"(over {', '.join(m['macro_f1_classes'])}), benign FPR **{100 * (m['benign_fpr'] or 0):.2f}%** "
           f"({m['benign_false_positives']} of {m['benign_rows']:,}).", "",
           "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for c in LABELS:
        p = m["per_class"][c]
        if p["support"] == 0 and p["precision"] == 0:
            out.append(f"| {c} | – | – | – | 0 |")
        else:
            out.append(f"| {c} | {p['precision']:.3f} | {p['recall']:.3f} | {p['f1']:.3f} | {p['support']:,} |")
    out += ["", "Confusion (rows = truth, columns = prediction):", "",
            "| truth \\ pred | " + " | ".join(LABELS) + " |", "|---|" + "---:|" * len(LABELS)]
    for c, row in zip(LABELS, m["confusion_matrix"]["matrix"]):
        out.append(f"| **{c}** | " + " | ".join(f"{v:,}" for v in row) + " |")
    return "\n".join(out)


def public_eval(args, model):
    """Replay each public attack capture through tidewatchd with the model; majority label of its attack flows."""
    res = []
    os.makedirs(args.work, exist_ok=True)
    for line in open(args.public_tsv):
        if line.startswith("#") or not line.strip():
            continue
        fname, family, attacker, what = line.rstrip("\n").split("\t")
        path = os.path.join(args.public_dir, fname)
        if not os.path.exists(path):
            res.append({"file": fname, "family": family, "missing": True})
            continue
        out = os.path.join(args.work, fname + ".verdicts.jsonl")
        subprocess.run([args.tidewatchd, "replay", path, "--model", model, "--early-packets", "8",
                        "--workers", "0", "--output", f"json:{out}"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end, early = collections.Counter(), collections.Counter()
        for l in open(out):
            v = json.loads(l)
            if attacker != "*" and v["src_ip"] != attacker:
                continue
            (end if v["trigger"] == "end" else early)[v["label"]] += 1
        maj = end.most_common(1)[0][0] if end else "-"
        res.append({"file": fname, "family": family, "what": what, "attack_flows": sum(end.values()),
                    "end_labels": dict(end), "early_labels": dict(early), "majority": maj,
                    "match": maj == family})
    return res


def evaluate_cmd(args):
    sess, meta = load_model(args.model)
    feats = meta["tidewatch.features"].split(",")
    n_feat = len(feats)
    sets = test_sets(args, n_feat)
    results = collections.OrderedDict()
    for name, rows in sets.items():
        X, y = rows_xy(rows, n_feat)
        pred = predict(sess, X)
        results[name] = T.evaluate(y, pred)
        print(T.format_eval(f"lab test seeds {args.seeds}, {name}", results[name]))
    # End rows split by size: one-packet flows (a lone SYN or UDP datagram that got no answer)
    # end by timeout or end of input, when the engine's host context has decayed.
    fi, bi = feats.index("fwd_packets"), feats.index("bwd_packets")
    rows = sets["end"]
    X, y = rows_xy(rows, n_feat)
    pred = predict(sess, X)
    one = (X[:, fi] + X[:, bi]) <= 1
    split = {"end, 1-packet flows": T.evaluate(y[one], pred[one]),
             "end, flows of 2+ packets": T.evaluate(y[~one], pred[~one])}
    for k, v in split.items():
        print(T.format_eval(f"lab test seeds {args.seeds}, {k}", v))
    metrics = {"model": args.model, "model_meta": meta, "test_seeds": args.seeds, "ks": args.ks,
               "lab_test": results, "end_by_size": split}
    # Per-variant recall at end and K=8 (what each tool's flows are called).
    per_variant = {}
    for name in ("end", f"K={args.ks[len(args.ks) // 2]}"):
        rows = sets[name]
        X, y = rows_xy(rows, n_feat)
        pred = predict(sess, X)
        agg = collections.defaultdict(collections.Counter)
        for r, p in zip(rows, pred):
            agg[f"{r[9]}/{r[-1]}"][LABELS[p]] += 1
        per_variant[name] = {k: dict(v) for k, v in sorted(agg.items())}
    metrics["per_variant"] = per_variant
    # Hold-out-tool experiment.
    if args.holdout_model:
        hs, _ = load_model(args.holdout_model)
        ho = {}
        for name, rows in sets.items():
            sel = [r for r in rows if f"{r[9]}/{r[-1]}" in set(args.holdout_variant)]
            for hv in args.holdout_variant:
                sub = [r for r in sel if f"{r[9]}/{r[-1]}" == hv]
                if not sub:
                    continue
                X, y = rows_xy(sub, n_feat)
                ph, pf = predict(hs, X), predict(sess, X)
                ho.setdefault(hv, {})[name] = {
                    "rows": len(sub),
                    "recall_holdout_model": float(np.mean(ph == y)),
                    "recall_full_model": float(np.mean(pf == y)),
                    "holdout_model_calls_them": dict(collections.Counter(LABELS[p] for p in ph)),
                }
            # The held-out model on everything else (did leaving the tool out cost elsewhere?)
            X, y = rows_xy(rows, n_feat)
            ho.setdefault("_all_rows_macro_f1", {})[name] = T.evaluate(y, predict(hs, X))["macro_f1"]
        metrics["holdout"] = {"variants": args.holdout_variant, "model": args.holdout_model, "results": ho}
    # Synthetic test data (pcaps/generate.py) -- the demo's kind of traffic.
    if args.synthetic_test:
        rows = []
        for p in args.synthetic_test:
            _, rr = read_rows(p)
            rows += [r for r in rr if r[9]]
        syn = {}
        for trig in ("early", "end"):
            sub = [r for r in rows if r[1] == trig]
            X, y = rows_xy(sub, n_feat)
            syn[trig] = T.evaluate(y, predict(sess, X))
        metrics["synthetic_test"] = syn
    if args.public_tsv:
        metrics["public_attacks"] = public_eval(args, args.model)
    train_metrics = json.load(open(args.train_metrics))
    metrics["throughput"] = train_metrics.get("throughput")
    metrics["train"] = {"data": train_metrics.get("data"), "model": train_metrics.get("model")}
    with open(args.metrics_out, "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    write_card(args, metrics, train_metrics)


def write_card(args, m, tm):
    mod = tm["model"]
    st = {k: v for k, v in mod.items() if k in ("layers", "n_parameters", "n_iter", "type")}
    thr = (m.get("throughput") or {}).get("batches", {})
    feats = m["model_meta"]["tidewatch.features"].split(",")
    L = []
    L.append(f"# Model card: `{mod['name']}` {mod['version']}")
    L.append("")
    L.append("Tidewatch flow classifier trained on the **lab corpus**: real tools (Debian packages) run in "
             "network namespaces by `pcaps/lab/make-lab.sh`, labelled from the generator's own record of which "
             "host ran which tool against which target when (never from traffic statistics). Classes: "
             + ", ".join(f"`{c}`" for c in LABELS) + ".")
    L.append("")
    if args.note:
        L.append(args.note)
        L.append("")
    # The targets, checked on this run's figures.
    lt = m["lab_test"]
    pub = [r for r in m.get("public_attacks", []) if not r.get("missing")]
    kmid = f"K={args.ks[len(args.ks) // 2]}"
    fpr_max = max((v["benign_fpr"] or 0) for v in lt.values())
    checks = [
        ("macro-F1 at flow end, unseen seeds", "≥ 0.95", f"{lt['end']['macro_f1']:.3f}", lt["end"]["macro_f1"] >= 0.95),
        (f"macro-F1 early at {kmid}", "≥ 0.90", f"{lt[kmid]['macro_f1']:.3f}", lt[kmid]["macro_f1"] >= 0.90),
        ("benign FPR (worst of every K and end)", "≤ 0.5 %", f"{100 * fpr_max:.2f} %", fpr_max <= 0.005),
    ]
    if pub:
        ok = sum(r["match"] for r in pub)
        checks.append(("public attack captures: majority label = family", f"{len(pub)} of {len(pub)}",
                       f"{ok} of {len(pub)}", ok == len(pub)))
    thr256 = ((m.get("throughput") or {}).get("batches") or {}).get("256")
    if thr256:
        checks.append(("ONNX Runtime rows/s per core, batch 256", "≥ 2,000,000",
                       f"{thr256['rows_per_cpu_s']:,.0f}", thr256["rows_per_cpu_s"] >= 2e6))
    L.append("| target (issue 6) | wanted | this model | met |")
    L.append("|---|---|---|---|")
    for name, want, got, ok in checks:
        L.append(f"| {name} | {want} | {got} | {'yes' if ok else '**no**'} |")
    L.append("")
    L.append("## What it is")
    L.append("")
    L.append(f"- **Type:** {st.get('type', '?')} layers {'-'.join(map(str, st.get('layers', [])))} "
             f"({st.get('n_parameters', '?')} parameters, {st.get('n_iter', '?')} epochs), input "
             "sign(x)·log(1+|x|) then standardised (inside the graph); one model for early and end rows.")
    ops = ", ".join(f"{d} {v}" for d, v in mod["onnx"]["opset_import"].items())
    L.append(f"- **ONNX:** opset {ops}, IR {mod['onnx']['ir_version']} (loads in ONNX Runtime 1.31); input "
             f"`features` float32 [N, {len(feats)}]; outputs `label` int64 [N], `probabilities` float32 [N, 6] "
             "(no ZipMap); metadata `tidewatch.schema`/`schema_version`/`features`/`labels`/`model_name`/"
             f"`model_version`. File {mod['file_bytes']:,} bytes, sha256 `{mod['sha256']}`.")
    L.append(f"- **Schema:** `{m['model_meta']['tidewatch.schema']}` v{m['model_meta']['tidewatch.schema_version']}, "
             f"{len(feats)} features exported by the engine (`tidewatchd features`; see FEATURES.md). "
             "No feature is computed in Python; addresses, ports and timestamps are not inputs.")
    L.append("")
    L.append("## Data")
    L.append("")
    L.append(args.data_text)
    L.append("")
    tr = tm["data"]["train"]
    cnt = collections.Counter()
    for f in tr["files"]:
        for t, d in f["counts"].items():
            for c, n in d.items():
                cnt[(t, c)] += n
    L.append(f"Training rows ({tr['labeled_rows']:,}; early rows of every K plus end rows):")
    L.append("")
    L.append("| trigger | " + " | ".join(LABELS) + " |")
    L.append("|---|" + "---:|" * len(LABELS))
    for t in ("early", "end"):
        L.append(f"| {t} | " + " | ".join(f"{cnt[(t, c)]:,}" for c in LABELS) + " |")
    L.append("")
    L.append("## Results on unseen seeds")
    L.append("")
    L.append(f"Lab test seeds {' '.join(map(str, m['test_seeds']))} (never trained on). `K=k`: the row the engine "
             "writes after a flow's first k packets (`--early-packets k`; only flows that reach k packets have one); "
             "`end`: at flow end. Macro-F1 averages the classes with test rows; benign FPR = share of benign rows "
             "called an attack.")
    L.append("")
    for name, ev in m["lab_test"].items():
        L.append(md_eval(ev, name))
        L.append("")
    if m.get("end_by_size"):
        L.append("### End rows by flow size")
        L.append("")
        L.append("A flow of one packet (a SYN or UDP datagram nobody answered: filtered scans, floods) ends by "
                 "timeout or at the end of the capture, and the engine computes its host context then, when the "
                 "burst it belonged to has decayed; such flows carry almost nothing to tell a scan from a flood.")
        L.append("")
        for name, ev in m["end_by_size"].items():
            if ev["rows"]:
                L.append(md_eval(ev, name))
                L.append("")
    if m.get("per_variant"):
        L.append("### Per tool variant")
        L.append("")
        L.append("What the test seeds' flows of each tool variant are called (label/variant from the lab's action log):")
        L.append("")
        names = list(m["per_variant"])
        L.append("| variant | " + " | ".join(names) + " |")
        L.append("|---|" + "---|" * len(names))
        keys = sorted(set().union(*[set(v) for v in m["per_variant"].values()]))
        for k in keys:
            cells = []
            for n in names:
                d = m["per_variant"][n].get(k, {})
                cells.append(", ".join(f"{lab} {c:,}" for lab, c in sorted(d.items(), key=lambda x: -x[1])) or "–")
            L.append(f"| `{k}` | " + " | ".join(cells) + " |")
        L.append("")
    if "holdout" in m:
        ho = m["holdout"]
        L.append("## Hold-out tool")
        L.append("")
        L.append("A second model, same configuration, trained without the flows of "
                 + ", ".join(f"`{v}`" for v in ho["variants"])
                 + " (left out of the training seeds), then tested on those flows of the test seeds. "
                 "Recall = share of them given their true class.")
        L.append("")
        L.append("| held-out variant | rows | recall, model without it | recall, full model | model without it calls them |")
        L.append("|---|---|---:|---:|---|")
        for v, per in ho["results"].items():
            if v.startswith("_"):
                continue
            for name, r in per.items():
                calls = ", ".join(f"{k} {n}" for k, n in sorted(r["holdout_model_calls_them"].items(), key=lambda x: -x[1]))
                L.append(f"| `{v}` {name} | {r['rows']:,} | {r['recall_holdout_model']:.3f} | {r['recall_full_model']:.3f} | {calls} |")
        allf = ho["results"].get("_all_rows_macro_f1", {})
        if allf:
            L.append("")
            L.append("Macro-F1 of the model without them on all test rows: " +
                     ", ".join(f"{k} {v:.3f}" for k, v in allf.items()) + ".")
        L.append("")
    if "synthetic_test" in m:
        L.append("## Synthetic captures (pcaps/generate.py, as in `make demo`)")
        L.append("")
        for t, ev in m["synthetic_test"].items():
            L.append(f"- {t}: macro-F1 {ev['macro_f1']:.3f}, benign FPR {100 * (ev['benign_fpr'] or 0):.2f}% "
                     f"({ev['rows']:,} rows)")
        L.append("")
    if "public_attacks" in m:
        L.append("## Real attack captures (../shared/pcaps/public/attacks, not in this repository)")
        L.append("")
        L.append("Each capture replayed with `tidewatchd replay --early-packets 8`; the attack flows are those "
                 "the listed attacker initiated (or every flow). Majority end-verdict label vs the capture's family.")
        L.append("")
        L.append("| capture | family | attack flows | end verdicts | majority | match |")
        L.append("|---|---|---:|---|---|---|")
        n_ok = n = 0
        for r in m["public_attacks"]:
            if r.get("missing"):
                L.append(f"| `{r['file']}` | {r['family']} | – | missing | – | – |")
                continue
            n += 1
            n_ok += r["match"]
            labs = ", ".join(f"{k} {v}" for k, v in sorted(r["end_labels"].items(), key=lambda x: -x[1]))
            L.append(f"| `{r['file']}` ({r['what']}) | {r['family']} | {r['attack_flows']} | {labs} | "
                     f"{r['majority']} | {'yes' if r['match'] else '**no**'} |")
        L.append("")
        L.append(f"Majority matches family on **{n_ok} of {n}** captures.")
        L.append("")
    if thr:
        L.append("## Inference cost")
        L.append("")
        L.append("ONNX Runtime, 1 intra-op thread, rows per CPU-second of the inference thread (= per core):")
        L.append("")
        L.append("| batch | rows per CPU-second |")
        L.append("|---:|---:|")
        for b, v in thr.items():
            L.append(f"| {b} | {v['rows_per_cpu_s']:,.0f} |")
        L.append("")
    L.append("## Reproduce")
    L.append("")
    L.append("```sh")
    L.append(args.command)
    L.append("```")
    L.append("")
    L.append("Captures are made on demand (root; about 3 minutes per seed, 100–300 MB each, in build/lab/, "
             "git-ignored); timing in a live lab differs between runs even with the same seed, so a rerun gives "
             "close, not identical, figures. With the same feature CSVs, training is seeded and deterministic.")
    L.append("")
    L.append("## Blind spots")
    L.append("")
    L.append(args.blind_spots)
    L.append("")
    with open(args.card, "w") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--feat-dir", required=True)
    p.add_argument("--lab-dir", required=True)
    p.add_argument("--seeds", nargs="+", required=True)
    p.add_argument("--ks", nargs="+", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--exclude-variant", action="append")
    p.add_argument("--extra", nargs="*")
    e = sub.add_parser("evaluate")
    e.add_argument("--model", required=True)
    e.add_argument("--feat-dir", required=True)
    e.add_argument("--lab-dir", required=True)
    e.add_argument("--seeds", nargs="+", required=True)
    e.add_argument("--ks", nargs="+", type=int, required=True)
    e.add_argument("--train-metrics", required=True)
    e.add_argument("--holdout-model")
    e.add_argument("--holdout-variant", action="append", default=[])
    e.add_argument("--synthetic-test", nargs="*")
    e.add_argument("--public-tsv")
    e.add_argument("--public-dir")
    e.add_argument("--tidewatchd", default="target/release/tidewatchd")
    e.add_argument("--work", default="build/lab/public")
    e.add_argument("--metrics-out", required=True)
    e.add_argument("--card", required=True)
    e.add_argument("--command", required=True)
    e.add_argument("--data-text", required=True)
    e.add_argument("--blind-spots", default="")
    e.add_argument("--note", default="")
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args)
    else:
        evaluate_cmd(args)


if __name__ == "__main__":
    main()
