#!/usr/bin/env python3
"""Data preparation and evaluation for the lab-trained model (models/train/build-lab.sh).

    lab.py prepare  --feat-dir D --lab-dir L --seeds 1 2 --ks 4 8 16 --out D/train.csv
                    [--exclude-variant scan/nmap-sV ...] [--extra CSV ...]
                    [--extra-benign CSV ... --max-benign-rows N]
    lab.py public-list --manifest M.tsv [--exclude-source S ...]   # benign public captures
    lab.py evaluate --model M.onnx --feat-dir D --lab-dir L --seeds 11 12 --ks 4 8 16
                    --train-metrics M.metrics.json [--holdout-model H.onnx --holdout-variant ...]
                    [--public-tsv T --public-dir P] [--synthetic-test CSV ...] [--xgen-model X.onnx]
                    [--everyday 21 22] [--public-protocols INDEX.tsv --public-features DIR]
                    [--heldout-source-model M.onnx:SRC,SRC ...] [--ttd] --tidewatchd BIN
                    --metrics-out J --card C --command CMD

Feature rows come from `tidewatchd features` only (one export per K: its `early` rows
are the K-packet rows; its `end` and `host` rows are the same for every K). `prepare`
writes one training CSV (end and host rows once, early rows of every K) in train.py's
input format, with flow ids `<capture>~k<K>~<id>` so train.py can hold out whole
captures and tell the K of each early row; rows are joined to the lab's flows.csv
(tool, variant) by direction-free 5-tuple and start time, to leave chosen tool variants
out. `evaluate` runs the exported ONNX model in ONNX Runtime with its alert thresholds
(ONNX metadata `tidewatch.thresholds`; the plain arg-max is reported too) per K, host
trigger and flow end, and every other check of build-lab.sh, then writes the metrics
JSON and the card (make_card.write_lab_card).
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402

LABELS = T.LABELS
NMETA = len(T.META_COLUMNS)
SLACK = 2.0
BENIGN = T.LABEL_INDEX["benign"]


def feat_path(feat_dir, seed, k):
    """Feature export of a lab capture: seed "3" -> seed3-k8.csv, "everyday21" -> everyday21-k8.csv."""
    seed = str(seed)
    stem = seed if not seed.isdigit() else f"seed{seed}"
    return os.path.join(feat_dir, f"{stem}-k{k}.csv")


def lab_stem(lab_dir, seed):
    seed = str(seed)
    if seed.startswith("everyday"):
        return os.path.join(lab_dir, f"lab-everyday-seed{seed[8:]}")
    if seed.startswith("heldout"):
        # Other tools, same attack classes (masscan, nping, medusa, ncrack, dns2tcp, ...).
        return os.path.join(lab_dir, f"lab-heldout-seed{seed[7:]}")
    return os.path.join(lab_dir, f"lab-seed{seed}")


class Variants:
    """(label, variant, action) of a feature row or verdict, from the lab's flows.csv."""

    def __init__(self, lab_dir, seed):
        self.map = collections.defaultdict(list)
        self.flows = []
        path = lab_stem(lab_dir, seed) + ".flows.csv"
        if not os.path.exists(path):
            return
        for r in csv.DictReader(open(path)):
            a, b = (r["src_ip"], int(r["src_port"])), (r["dst_ip"], int(r["dst_port"]))
            key = (r["proto"],) + ((a, b) if a <= b else (b, a))
            f = (float(r["first_ts"]), float(r["last_ts"]), r["variant"], int(r.get("action") or -1),
                 int(r.get("packets") or 0), r.get("tool", ""))
            self.map[key].append(f)
            self.flows.append(f)

    def find(self, proto, sip, sport, dip, dport, t):
        a, b = (sip, int(sport)), (dip, int(dport))
        key = (proto,) + ((a, b) if a <= b else (b, a))
        best = None
        for f in self.map.get(key, ()):
            if f[0] - SLACK <= t <= f[1] + SLACK:
                d = abs(f[0] - t)
                if best is None or d < best[0]:
                    best = (d, f)
        return best[1] if best else None

    def of(self, row, with_tool=False):
        f = self.find(row[4], row[5], row[6], row[7], row[8], float(row[2]))
        if not f:
            return ""
        return f"{f[5]}:{f[2]}" if with_tool else f[2]


def read_rows(path):
    with open(path, newline="") as f:
        rd = csv.reader(f)
        header = next(rd)
        return header, list(rd)


def capture_name(path):
    """synth101.csv -> synth101 (train.py groups captures by this name without digits)."""
    return os.path.splitext(os.path.basename(path))[0].replace("~", "-")


def prepare(args):
    header = None
    schema_src = None
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
                if r[1] != "early" and i != 0:
                    continue      # end and host rows are the same in every export: take them once
                if not r[9]:
                    continue
                if var is not None:
                    v = var.of(r)
                    if f"{r[9]}/{v}" in excl:
                        excluded[f"{r[9]}/{v}/{r[1]}"] += 1
                        continue
                r[0] = f"lab{seed}~k{k}~{r[0]}"   # capture and K (train.py row_origin)
                out_rows.append(r)
    # Lab-style captures whose every flow is benign (everyday traffic: pollers, ssh, NTP, DHCP,
    # mDNS, SSDP, IPv6 ND/MLD ...): all their rows, every trigger, labelled benign. Their capture
    # name is the tag itself (everyday21 -> kind "everyday"), so train.py keeps them out of the
    # threshold validation unless two or more are trained on.
    n_ben = collections.Counter()
    for tag in args.benign_seeds or []:
        for i, k in enumerate(args.ks):
            path = feat_path(args.feat_dir, tag, k)
            h, rows = read_rows(path)
            if header is None:
                header, schema_src = h, path + ".schema.json"
            elif h != header:
                raise SystemExit(f"{path}: header differs")
            for r in rows:
                if r[1] != "early" and i != 0:
                    continue
                r[9] = "benign"
                r[0] = f"{tag}~k{k}~{r[0]}"
                out_rows.append(r)
                n_ben[r[1]] += 1
    for extra in args.extra or []:
        h, rows = read_rows(extra)
        if header is None:
            header, schema_src = h, extra + ".schema.json"
        if h != header:
            raise SystemExit(f"{extra}: header differs from the lab exports")
        cap = capture_name(extra)
        for r in rows:
            if r[9]:
                r[0] = f"{cap}~k{args.extra_k}~{r[0]}"
                out_rows.append(r)
    # Public benign captures: every row benign (nothing in them is an attack by their
    # MANIFEST themes); at most --max-benign-rows per capture and trigger, evenly spread.
    n_pub = collections.Counter()
    for i, extra in enumerate(args.extra_benign or []):
        if not os.path.exists(extra) or not os.path.exists(extra + ".schema.json"):
            continue
        h, rows = read_rows(extra)
        if header is None:
            header, schema_src = h, extra + ".schema.json"
        if h != header:
            raise SystemExit(f"{extra}: header differs from the lab exports (another schema?)")
        by_trig = collections.defaultdict(list)
        for r in rows:
            by_trig[r[1]].append(r)
        for trig, rr in by_trig.items():
            if args.max_benign_rows and len(rr) > args.max_benign_rows:
                idx = np.linspace(0, len(rr) - 1, args.max_benign_rows).round().astype(int)
                rr = [rr[j] for j in sorted(set(idx.tolist()))]
            for r in rr:
                r[9] = "benign"
                r[0] = f"pub{i}~k{args.extra_benign_k}~{r[0]}"
                out_rows.append(r)
                n_pub[trig] += 1
    if header is None:
        raise SystemExit("prepare: no input")
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(out_rows)
    shutil.copy(schema_src, args.out + ".schema.json")
    c = collections.Counter((r[1], r[9]) for r in out_rows)
    print(f"prepare: {args.out}: {len(out_rows)} rows; " +
          ", ".join(f"{t}/{lab}={n}" for (t, lab), n in sorted(c.items())) +
          (f"; excluded {dict(excluded)}" if excluded else "") +
          (f"; public benign rows {dict(n_pub)}" if n_pub else "") +
          (f"; everyday benign rows {dict(n_ben)}" if n_ben else ""), file=sys.stderr)


# --------------------------------------------------------------------------- public captures

def manifest_benign(manifest, exclude_sources=()):
    """(file, source) of the public protocol captures whose themes are not attacks."""
    out = []
    for r in csv.DictReader(open(manifest), delimiter="\t"):
        f, themes = r["file"], r.get("themes", "")
        if not f.startswith("protocols/"):
            continue
        if "attack" in themes.lower():
            continue
        src = r.get("source_repo", "") or os.path.basename(f).split("__")[0]
        if src in exclude_sources:
            continue
        out.append((f, src))
    return out


def public_list(args):
    for f, src in manifest_benign(args.manifest, set(args.exclude_source or [])):
        print(f"{f}\t{src}")


def public_csv(feat_dir, f):
    return os.path.join(feat_dir, os.path.basename(f) + ".csv")


# --------------------------------------------------------------------------- model

class Model:
    def __init__(self, path):
        import onnx
        m = onnx.load(path)
        self.path = path
        self.meta = {p.key: p.value for p in m.metadata_props}
        self.sess = T.ort_session(open(path, "rb").read())
        self.labels = self.meta.get("tidewatch.labels", ",".join(LABELS)).split(",")
        if self.labels != list(LABELS):
            raise SystemExit(f"{path}: labels {self.labels} differ from train.py's {list(LABELS)}")
        self.features = self.meta["tidewatch.features"].split(",")
        self.thresholds = T.parse_thresholds(self.meta.get(T.THRESHOLDS_KEY))

    def proba(self, X):
        if len(X) == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        return self.sess.run(None, {T.INPUT_NAME: X})[1]

    def predict(self, X):
        """(thresholded prediction = what the engine reports, plain arg-max)."""
        p = self.proba(X)
        return T.apply_thresholds(p, self.thresholds), T.apply_thresholds(p, None)

    def verdict_label(self, v):
        """The label of a verdict under this model's thresholds (the v4 engine applies them
        itself; an older engine reports the arg-max, so recompute from the scores)."""
        sc = v.get("scores")
        if not sc or not self.thresholds:
            return v["label"]
        lab = max(LABELS, key=lambda c: (sc.get(c, 0.0), -LABELS.index(c)))
        if lab != "benign" and np.float32(sc.get(lab, 0.0)) < np.float32(self.thresholds.get(lab, 0.0)):
            return "benign"
        return lab


def rows_xy(rows, n_feat):
    X = np.asarray([[float(v) for v in r[NMETA:NMETA + n_feat]] for r in rows],
                   dtype=np.float32).reshape(-1, n_feat)
    y = np.asarray([T.LABEL_INDEX[r[9]] if r[9] else BENIGN for r in rows], dtype=np.int64)
    return X, y


def group_of(row, k):
    return f"K={k}" if row[1] == "early" else row[1]


def order_groups(names):
    def key(g):
        if g.startswith("K="):
            return (0, int(g[2:]))
        return ({"early": 1, "host": 2, "end": 3}.get(g, 4), 0)
    return sorted(set(names), key=key)


def load_sets(feat_dir, lab_dir, seeds, ks, labelled_only=True, check_header=None, with_tool=False):
    """{'K=4': rows, ..., 'host': rows, 'end': rows}, each row with its variant appended."""
    sets = collections.defaultdict(list)
    for seed in seeds:
        var = Variants(lab_dir, seed)
        for i, k in enumerate(ks):
            path = feat_path(feat_dir, seed, k)
            h, rows = read_rows(path)
            if check_header is not None and h[NMETA:] != check_header:
                raise SystemExit(f"{path}: feature columns differ from the model's "
                                 f"({T.describe_mismatch(check_header, h[NMETA:])}); re-export with this engine")
            for r in rows:
                if labelled_only and not r[9]:
                    continue
                if r[1] == "early" or i == 0:
                    sets[group_of(r, k)].append(r + [var.of(r, with_tool)])
    return collections.OrderedDict((g, sets[g]) for g in order_groups(sets))


def eval_sets(model, sets, n_feat):
    res, raw = collections.OrderedDict(), collections.OrderedDict()
    for name, rows in sets.items():
        X, y = rows_xy(rows, n_feat)
        pt, pa = model.predict(X)
        res[name], raw[name] = T.evaluate(y, pt), T.evaluate(y, pa)
    return res, raw


def alarm_counts(model, rows, n_feat):
    """Rows treated as benign: (rows, alarmed rows, alarms by label) with thresholds, and arg-max alarms."""
    X, _ = rows_xy(rows, n_feat)
    pt, pa = model.predict(X)
    by = collections.Counter(LABELS[p] for p in pt if p != BENIGN)
    return {"rows": len(rows), "alarms": int(np.sum(pt != BENIGN)), "alarms_argmax": int(np.sum(pa != BENIGN)),
            "fpr": float(np.mean(pt != BENIGN)) if len(rows) else None,
            "fpr_argmax": float(np.mean(pa != BENIGN)) if len(rows) else None,
            "by_label": dict(by)}


# --------------------------------------------------------------------------- replay checks

def replay(tw, pcap, model, out, k=8):
    subprocess.run([tw, "replay", pcap, "--model", model, "--early-packets", str(k),
                    "--workers", "0", "--output", f"json:{out}"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def public_eval(args, model):
    """Replay each public attack capture through tidewatchd with the model; majority label of its attack flows."""
    res = []
    os.makedirs(args.work, exist_ok=True)
    jobs = []
    for line in open(args.public_tsv):
        if line.startswith("#") or not line.strip():
            continue
        fname, family, attacker, what = line.rstrip("\n").split("\t")
        path = os.path.join(args.public_dir, fname)
        out = os.path.join(args.work, fname + ".verdicts.jsonl")
        jobs.append((fname, family, attacker, what, path, out))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        futs = {j[0]: ex.submit(replay, args.tidewatchd, j[4], model.path, j[5])
                for j in jobs if os.path.exists(j[4])}
        for fname, family, attacker, what, path, out in jobs:
            if fname not in futs:
                res.append({"file": fname, "family": family, "missing": True})
                continue
            try:
                futs[fname].result()
            except subprocess.CalledProcessError as e:
                res.append({"file": fname, "family": family, "what": what, "error": e.stderr.decode()[-300:],
                            "match": False, "attack_flows": 0, "end_labels": {}, "early_labels": {},
                            "majority": "error"})
                continue
            end, early = collections.Counter(), collections.Counter()
            for line in open(out):
                v = json.loads(line)
                if v.get("event_type", "verdict") != "verdict":
                    continue  # incident records go to the same file
                if attacker != "*" and v["src_ip"] != attacker:
                    continue
                (end if v["trigger"] == "end" else early)[model.verdict_label(v)] += 1
            maj = end.most_common(1)[0][0] if end else "-"
            res.append({"file": fname, "family": family, "what": what, "attack_flows": sum(end.values()),
                        "end_labels": dict(end), "early_labels": dict(early), "majority": maj,
                        "match": maj == family})
    return res


def parse_ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


# Actions merged into one episode: a C2 implant's beacons (one action per beacon) are one
# campaign per source host; an iodine tunnel and the resolver's forwarded queries are one.
def episodes_of(actions):
    eps = []
    c2 = {}
    iod = []
    for a in sorted(actions, key=lambda a: a["t0"]):
        if a["label"] == "benign":
            continue
        if a["label"] == "c2":
            e = c2.get(a["src"])
            if e is None:
                e = c2[a["src"]] = {"label": "c2", "variant": "beacons", "ids": [], "t0": a["t0"]}
                eps.append(e)
            e["ids"].append(a["id"])
            continue
        if a["tool"] == "iodine":
            e = next((e for e in iod if abs(e["t0"] - a["t0"]) < 5), None)
            if e is not None:
                e["ids"].append(a["id"])
                if not a["variant"].endswith("forwarded"):
                    e["variant"] = a["variant"]
                continue
            e = {"label": a["label"], "variant": a["variant"], "ids": [a["id"]], "t0": a["t0"]}
            iod.append(e)
            eps.append(e)
            continue
        eps.append({"label": a["label"], "variant": a["variant"], "ids": [a["id"]], "t0": a["t0"]})
    return eps


# Without `detected_at` (engines before schema v4) a verdict's `ts` is its row's time: the
# K-th packet for early rows, but the LAST packet for end rows, which the engine only writes
# when the flow ends -- a closed TCP flow 1 s later, an idle one after the protocol's idle
# timeout (FlowConfig::default() in engine/src/flow.rs; `tidewatchd replay` defaults).
# Time to detect then adds that delay to end verdicts. A flow still open at the end of the
# capture (end_of_input) counts as if the capture had gone on: it would have timed out.
# Other end reasons (port_reuse, evicted, active_timeout) happen at their packet: none.
IDLE_S = {"tcp": 300.0, "udp": 120.0, "icmp": 60.0}
END_DELAY_S = {"closed": 1.0, "idle_timeout": IDLE_S, "end_of_input": IDLE_S}


def end_delay(v):
    if v.get("trigger") != "end":
        return 0.0
    d = END_DELAY_S.get(v.get("end_reason"), 0.0)
    return d.get(v.get("proto"), 60.0) if isinstance(d, dict) else d


def ttd_capture(args, model, seed):
    """Replay one unseen lab capture; per episode, time/attempts to the first correct verdict."""
    stem = lab_stem(args.lab_dir, seed)
    out = os.path.join(args.work, f"ttd-seed{seed}.verdicts.jsonl")
    replay(args.tidewatchd, stem + ".pcap", model.path, out, k=8)
    actions = [json.loads(line) for line in open(stem + ".actions.jsonl")]
    flows = list(csv.DictReader(open(stem + ".flows.csv")))
    by_action = collections.defaultdict(list)
    for f in flows:
        if f["action"] not in ("", "-1"):
            by_action[int(f["action"])].append(f)
    var = Variants(args.lab_dir, seed)
    eps = episodes_of(actions)
    ep_of_action = {}
    for i, e in enumerate(eps):
        for a in e["ids"]:
            ep_of_action[a] = i
        fl = [f for a in e["ids"] for f in by_action.get(a, ())]
        e["flows"] = sorted(float(f["first_ts"]) for f in fl)
        e["start"] = e["flows"][0] if e["flows"] else None
        e["det"] = None
    used_detected_at = False
    for line in open(out):
        v = json.loads(line)
        if v.get("event_type", "verdict") != "verdict":
            continue  # incident records go to the same file
        start = parse_ts(v["flow_start"]) if "flow_start" in v else parse_ts(v["ts"])
        f = var.find(v["proto"], v["src_ip"], v["src_port"], v["dst_ip"], v["dst_port"], start)
        if f is None or f[3] not in ep_of_action:
            continue
        e = eps[ep_of_action[f[3]]]
        if model.verdict_label(v) != e["label"]:
            continue
        ts = parse_ts(v["ts"])
        if "detected_at" in v:
            t = parse_ts(v["detected_at"])
            used_detected_at = True
        else:
            t = ts + end_delay(v)
        if e["det"] is None or t < e["det"][0]:
            e["det"] = (t, v.get("trigger"), int(v.get("packets") or 0), f[4], ts)
    res = []
    for e in eps:
        r = {"seed": seed, "label": e["label"], "variant": e["variant"], "actions": len(e["ids"]),
             "flows": len(e["flows"]), "detected": e["det"] is not None and e["start"] is not None}
        if not e["flows"]:
            r["note"] = "no flows in the capture"
        if r["detected"]:
            t, trig, pk, _, ts = e["det"]
            before = sum(1 for x in e["flows"] if x <= t + 1e-6)
            r.update({"seconds": max(0.0, t - e["start"]), "seconds_ts": max(0.0, ts - e["start"]),
                      "trigger": trig, "flows_before": before, "packets_of_detecting_flow": pk})
            # Queries before detection: one per flow of a query/answer; a long tunnel flow
            # (iodine: one 5-tuple) counts its client packets up to the verdict.
            r["queries_before"] = before - 1 + max(1, (pk + 1) // 2) if pk > 2 else before
        res.append(r)
    return res, used_detected_at


TTD_TARGET = {"scan": ("seconds", 1.0, "≤ 1 s"), "dos": ("seconds", 1.0, "≤ 1 s"),
              "bruteforce": ("flows_before", 3, "≤ 3rd attempt"),
              "exfil": ("queries_before", 10, "≤ 10 queries"),
              "c2": ("flows_before", 5, "≤ 5 beacons")}


def ttd_eval(args, model, seeds=None):
    os.makedirs(args.work, exist_ok=True)
    eps, det_at = [], False
    seeds = [s for s in (args.seeds if seeds is None else seeds)
             if os.path.exists(lab_stem(args.lab_dir, s) + ".actions.jsonl")]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        for r, d in ex.map(lambda s: ttd_capture(args, model, s), seeds):
            eps += r
            det_at |= d
    per = collections.OrderedDict()
    for c in LABELS[1:]:
        es = [e for e in eps if e["label"] == c and e["flows"]]
        if not es:
            continue
        d = [e for e in es if e["detected"]]
        metric, lim, text = TTD_TARGET[c]
        row = {"episodes": len(es), "detected": len(d), "never": len(es) - len(d), "target": text,
               "metric": metric}
        for m in ("seconds", "seconds_ts", "flows_before", "queries_before"):
            vals = [e[m] for e in d]
            row[m] = {"median": statistics.median(vals) if vals else None, "max": max(vals) if vals else None}
        row["met"] = bool(d) and len(d) == len(es) and row[metric]["max"] <= lim
        row["within_target"] = sum(1 for e in d if e[metric] <= lim)
        per[c] = row
    return {"clock": "detected_at" if det_at else
            ("`ts` (this engine has no `detected_at`) plus, for end verdicts, the delay before the engine "
             "writes them: 1 s after a TCP close, the idle timeout (TCP 300 s, UDP 120 s, ICMP 60 s) after "
             "an idle flow's last packet (also for flows still open when the capture ends)"),
            "seeds": seeds, "per_class": per, "episodes": eps}


# --------------------------------------------------------------------------- evaluate

def evaluate_cmd(args):
    model = Model(args.model)
    feats = model.features
    n_feat = len(feats)
    sets = load_sets(args.feat_dir, args.lab_dir, args.seeds, args.ks, check_header=feats)
    results, results_raw = eval_sets(model, sets, n_feat)
    if model.thresholds:
        print("thresholds: " + T.thresholds_json(model.thresholds))
    for name in results:
        print(T.format_eval(f"lab test seeds {args.seeds}, {name}" + (", thresholded" if model.thresholds else ""),
                            results[name]))
        a = results_raw[name]
        print(f"  argmax: macro-F1 {T._f(a['macro_f1'])}  benign FPR {T._f(a['benign_fpr'])}")
    # End rows split by size: one-packet flows (a lone SYN or UDP datagram that got no answer)
    # end by timeout or end of input, when the engine's host context has decayed.
    split = {}
    if "fwd_packets" in feats and "bwd_packets" in feats and "end" in sets:
        fi, bi = feats.index("fwd_packets"), feats.index("bwd_packets")
        X, y = rows_xy(sets["end"], n_feat)
        pred, _ = model.predict(X)
        one = (X[:, fi] + X[:, bi]) <= 1
        split = {"end, 1-packet flows": T.evaluate(y[one], pred[one]),
                 "end, flows of 2+ packets": T.evaluate(y[~one], pred[~one])}
    kmid = f"K={args.ks[len(args.ks) // 2]}"
    metrics = {"model": args.model, "model_meta": model.meta, "thresholds": model.thresholds,
               "test_seeds": args.seeds, "ks": args.ks, "kmid": kmid,
               "lab_test": results, "lab_test_argmax": results_raw, "end_by_size": split}
    # Per-variant: what each tool's flows are called, at end, K mid and host.
    per_variant = {}
    for name in [g for g in ("end", kmid, "host") if g in sets]:
        rows = sets[name]
        X, y = rows_xy(rows, n_feat)
        pred, _ = model.predict(X)
        agg = collections.defaultdict(collections.Counter)
        for r, p in zip(rows, pred):
            agg[f"{r[9]}/{r[-1]}"][LABELS[p]] += 1
        per_variant[name] = {k: dict(v) for k, v in sorted(agg.items())}
    metrics["per_variant"] = per_variant
    if args.holdout_model:
        metrics["holdout"] = holdout_eval(args, model, sets, n_feat)
    if args.synthetic_test:
        metrics["synthetic_test"] = synth_eval(args, model, n_feat)
        if args.xgen_model:
            xm = Model(args.xgen_model)
            metrics["synthetic_test_xgen"] = {"model": args.xgen_model, "thresholds": xm.thresholds,
                                              "groups": synth_eval(args, xm, n_feat)}
    metrics["trained_with_synthetic"] = bool(args.trained_with_synthetic)
    metrics["everyday_trained"] = args.everyday_trained
    metrics["lab_benign"] = {g: alarm_counts(model, [r for r in rows if r[9] == "benign"], n_feat)
                             for g, rows in sets.items()}
    if args.everyday:
        metrics["everyday"] = everyday_eval(args, model, n_feat)
    if args.public_protocols:
        metrics["public_protocols"] = protocols_eval(args, model, n_feat)
    if args.public_tsv:
        metrics["public_attacks"] = public_eval(args, model)
    if args.heldout_seeds:
        metrics["heldout_tools"] = heldout_tools_eval(args, model, n_feat)
    if args.ttd:
        metrics["time_to_detect"] = ttd_eval(args, model)
        if args.heldout_seeds:
            metrics["time_to_detect_heldout"] = ttd_eval(args, model, args.heldout_seeds)
        for c, r in metrics["time_to_detect"]["per_class"].items():
            print(f"time to detect {c:<11} episodes {r['episodes']:>3} never {r['never']:>2}  "
                  f"median {r['seconds']['median']} s max {r['seconds']['max']} s  flows before: "
                  f"median {r['flows_before']['median']} max {r['flows_before']['max']}  "
                  f"queries before: max {r['queries_before']['max']}  target {r['target']}")
    train_metrics = json.load(open(args.train_metrics))
    metrics["throughput"] = train_metrics.get("throughput")
    metrics["threshold_selection"] = train_metrics.get("threshold_selection")
    metrics["train"] = {"data": train_metrics.get("data"), "model": train_metrics.get("model")}
    metrics["card"] = {"note": args.note, "data_text": args.data_text, "command": args.command,
                       "blind_spots": args.blind_spots}
    # The analysts' feedback trained on (models/train/feedback.py --summary-out), None without one.
    metrics["feedback"] = json.load(open(args.feedback_summary)) if args.feedback_summary else None
    with open(args.metrics_out, "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    import make_card
    make_card.write_lab_card(args.card, metrics, train_metrics, note=args.note, data_text=args.data_text,
                             command=args.command, blind_spots=args.blind_spots)
    print(f"wrote {args.metrics_out} and {args.card}", file=sys.stderr)


def heldout_tools_eval(args, model, n_feat):
    """Captures of the same attack classes made by OTHER tools (lab-heldout-seedN: masscan/nping
    scans, nping/scapy floods, medusa/ncrack brute force, dns2tcp/python DNS tunnels,
    wget/python/openssl beacons), evaluated exactly like the unseen lab seeds."""
    sets = load_sets(args.feat_dir, args.lab_dir, args.heldout_seeds, args.ks, check_header=model.features,
                     with_tool=True)
    res, raw = eval_sets(model, sets, n_feat)
    for name in res:
        print(T.format_eval(f"other tools {args.heldout_seeds}, {name}", res[name]))
    per_tool = {}
    for name, rows in sets.items():
        X, y = rows_xy(rows, n_feat)
        pred, _ = model.predict(X)
        agg = collections.defaultdict(collections.Counter)
        for r, p in zip(rows, pred):
            agg[f"{r[9]}/{r[-1] or '?'}"][LABELS[p]] += 1
        per_tool[name] = {k: dict(v) for k, v in sorted(agg.items())}
    benign = {g: alarm_counts(model, [r for r in rows if r[9] == "benign"], n_feat) for g, rows in sets.items()}
    return {"seeds": args.heldout_seeds, "results": res, "results_argmax": raw, "per_tool": per_tool,
            "benign": benign}


def holdout_eval(args, model, sets, n_feat):
    """The model trained without whole tool variants, on exactly those variants' test rows."""
    hm = Model(args.holdout_model)
    hv_set = set(args.holdout_variant)
    ho = {}
    targets, with_benign = {}, {}
    for name, rows in sets.items():
        sel = [r for r in rows if f"{r[9]}/{r[-1]}" in hv_set]
        for hv in args.holdout_variant:
            sub = [r for r in sel if f"{r[9]}/{r[-1]}" == hv]
            if not sub:
                continue
            X, y = rows_xy(sub, n_feat)
            ph, pf = hm.predict(X)[0], model.predict(X)[0]
            ho.setdefault(hv, {})[name] = {
                "rows": len(sub),
                "recall_holdout_model": float(np.mean(ph == y)),
                "recall_full_model": float(np.mean(pf == y)),
                "holdout_model_calls_them": dict(collections.Counter(LABELS[p] for p in ph)),
            }
        X, y = rows_xy(rows, n_feat)
        ho.setdefault("_all_rows_macro_f1", {})[name] = T.evaluate(y, hm.predict(X)[0])["macro_f1"]
        if sel:
            X, y = rows_xy(sel, n_feat)
            targets[name] = T.evaluate(y, hm.predict(X)[0])
        wb = sel + [r for r in rows if r[9] == "benign"]
        if sel:
            X, y = rows_xy(wb, n_feat)
            with_benign[name] = T.evaluate(y, hm.predict(X)[0])
    return {"variants": args.holdout_variant, "model": args.holdout_model, "thresholds": hm.thresholds,
            "results": ho, "exact": targets, "with_benign": with_benign}


def synth_eval(args, model, n_feat):
    rows = []
    for p in args.synthetic_test:
        h, rr = read_rows(p)
        if h[NMETA:] != model.features:
            raise SystemExit(f"{p}: feature columns differ from the model's; re-export with this engine")
        rows += [r for r in rr if r[9]]
    out = collections.OrderedDict()
    for trig in [t for t in ("early", "host", "end") if any(r[1] == t for r in rows)]:
        sub = [r for r in rows if r[1] == trig]
        X, y = rows_xy(sub, n_feat)
        pt, pa = model.predict(X)
        name = f"K={args.synthetic_k}" if trig == "early" else trig
        out[name] = T.evaluate(y, pt)
        out[name]["argmax_macro_f1"] = T.evaluate(y, pa)["macro_f1"]
        out[name]["argmax_benign_fpr"] = T.evaluate(y, pa)["benign_fpr"]
    return out


def everyday_eval(args, model, n_feat):
    """Everyday benign captures: every row is benign; alarms per trigger group and per variant."""
    res = {"captures": [], "groups": {}, "per_variant": {}}
    seeds = []
    for s in args.everyday:
        tag = f"everyday{s}"
        if all(os.path.exists(feat_path(args.feat_dir, tag, k)) for k in args.ks):
            seeds.append(tag)
            res["captures"].append(os.path.basename(lab_stem(args.lab_dir, tag)) + ".pcap")
    if not seeds:
        return None
    sets = load_sets(args.feat_dir, args.lab_dir, seeds, args.ks, labelled_only=False, check_header=model.features)
    pv = collections.defaultdict(dict)
    for g, rows in sets.items():
        res["groups"][g] = alarm_counts(model, rows, n_feat)
        byv = collections.defaultdict(list)
        for r in rows:
            byv[r[-1] or "(no variant)"].append(r)
        for v, rr in byv.items():
            pv[v][g] = alarm_counts(model, rr, n_feat)
    res["per_variant"] = {v: pv[v] for v in sorted(pv)}
    return res


def protocols_eval(args, model, n_feat):
    """Public protocol captures (not attacks): share of rows alarmed, per source project."""
    index = [line.rstrip("\n").split("\t") for line in open(args.public_protocols) if line.strip()]
    res = {"captures": len(index), "exported": 0, "per_source": {}, "top_captures": []}
    rows_by_src = collections.defaultdict(lambda: collections.defaultdict(list))
    per_cap = []
    for f, src in index:
        p = public_csv(args.public_features, f)
        if not os.path.exists(p):
            continue
        h, rows = read_rows(p)
        if h[NMETA:] != model.features:
            continue
        res["exported"] += 1
        for r in rows:
            rows_by_src[src][r[1] if r[1] != "early" else f"K={args.public_k}"].append(r)
        per_cap.append((f, src, rows))
    for src in sorted(rows_by_src):
        res["per_source"][src] = {g: alarm_counts(model, rows_by_src[src][g], n_feat)
                                  for g in order_groups(rows_by_src[src])}
        res["per_source"][src]["captures"] = sum(1 for _, s, _ in per_cap if s == src)
    tot = collections.defaultdict(list)
    for src in rows_by_src:
        for g, rr in rows_by_src[src].items():
            tot[g] += rr
    res["all"] = {g: alarm_counts(model, tot[g], n_feat) for g in order_groups(tot)}
    worst = []
    for f, src, rows in per_cap:
        if rows:
            a = alarm_counts(model, rows, n_feat)
            if a["alarms"]:
                worst.append({"file": f, "source": src, **a})
    res["top_captures"] = sorted(worst, key=lambda x: -x["alarms"])[:12]
    # Held-out-source models: each trained with the public benign captures of the other sources.
    ho = {}
    for spec in args.heldout_source_model or []:
        path, _, srcs = spec.partition(":")
        if not os.path.exists(path):
            continue
        hm = Model(path)
        for src in srcs.split(","):
            if src in rows_by_src:
                ho[src] = {g: alarm_counts(hm, rows_by_src[src][g], n_feat) for g in order_groups(rows_by_src[src])}
                ho[src]["model"] = path
    res["heldout_source"] = ho
    return res


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--feat-dir", required=True)
    p.add_argument("--lab-dir", required=True)
    p.add_argument("--seeds", nargs="*", default=[])
    p.add_argument("--ks", nargs="+", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--exclude-variant", action="append")
    p.add_argument("--extra", nargs="*", help="labelled CSVs (synthetic captures), one capture each")
    p.add_argument("--extra-k", type=int, default=8, help="--early-packets of the --extra exports (default 8)")
    p.add_argument("--benign-seeds", nargs="*", default=[],
                   help="lab-style captures whose rows are all benign (tags everydayN: features everydayN-kK.csv)")
    p.add_argument("--extra-benign", nargs="*", help="unlabelled CSVs whose rows are all benign (public captures)")
    p.add_argument("--extra-benign-k", type=int, default=8)
    p.add_argument("--max-benign-rows", type=int, default=300,
                   help="per --extra-benign capture and trigger, at most this many rows (0 = all)")
    q = sub.add_parser("public-list")
    q.add_argument("--manifest", required=True)
    q.add_argument("--exclude-source", action="append")
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
    e.add_argument("--synthetic-k", type=int, default=8)
    e.add_argument("--trained-with-synthetic", type=int, default=0)
    e.add_argument("--xgen-model", help="lab-only model for the cross-generator check on --synthetic-test")
    e.add_argument("--everyday", nargs="*", help="everyday capture seeds (features everydayS-kK.csv)")
    e.add_argument("--everyday-trained", nargs="*", default=[],
                   help="everyday seeds that were in the training data (reported, not evaluated)")
    e.add_argument("--heldout-seeds", nargs="*", default=[],
                   help="other-tools captures (tags heldoutN: features heldoutN-kK.csv, lab-heldout-seedN.*)")
    e.add_argument("--public-protocols", help="index TSV (file, source) of exported public protocol captures")
    e.add_argument("--public-features", help="directory of their feature CSVs")
    e.add_argument("--public-k", type=int, default=8)
    e.add_argument("--heldout-source-model", action="append",
                   help="MODEL.onnx:SRC[,SRC]: a model trained without those sources' public captures")
    e.add_argument("--ttd", action="store_true", help="time to detect per episode (replays the test captures)")
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
    e.add_argument("--feedback-summary", help="feedback.py --summary-out JSON of the analysts' feedback trained on")
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args)
    elif args.cmd == "public-list":
        public_list(args)
    else:
        evaluate_cmd(args)


if __name__ == "__main__":
    main()
