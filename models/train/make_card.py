#!/usr/bin/env python3
"""Write models/<name>/MODEL_CARD.md from train.py's metrics JSON and the ONNX file.

    .venv-train/bin/python models/train/make_card.py \
        --metrics models/baseline/metrics.json --model models/baseline/model.onnx \
        --data "train: pcaps/generate.py seeds 1-4; test: seed 101" \
        --command "<exact command that produced the model>"

The feature schema, feature list and classes are read from the ONNX model's
metadata (what the engine will see), not from the metrics file.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import sys
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))
from tidewatch_tools.labels import LABELS  # noqa: E402

TRIGGER_TEXT = {
    "early": "features snapshotted after the first K packets of a flow",
    "end": "features at flow end",
    "host": "a flow's first packet, classified at once because its source or destination "
            "crossed a host-context bound (scans, floods; schema v4)",
}


def onnx_facts(path: str) -> dict:
    import numpy as np
    import onnx
    m = onnx.load(path)
    meta = {p.key: p.value for p in m.metadata_props}
    need = ["tidewatch.schema", "tidewatch.schema_version", "tidewatch.features",
            "tidewatch.labels", "tidewatch.model_name", "tidewatch.model_version"]
    missing = [k for k in need if k not in meta]
    if missing:
        raise SystemExit(f"error: {path} lacks metadata {missing}; was it written by train.py?")
    trees = nodes = leaves = 0
    op = None
    inits = {t.name: t for t in m.graph.initializer}
    dense = []  # (inputs, outputs) of each Gemm/MatMul layer, in graph order
    dense_params = 0
    for node in m.graph.node:
        if node.op_type in ("Gemm", "MatMul") and len(node.input) >= 2 and node.input[1] in inits:
            w = inits[node.input[1]]
            dense.append((int(w.dims[0]), int(w.dims[1])))
            dense_params += int(np.prod(w.dims))
            if len(node.input) > 2 and node.input[2] in inits:
                dense_params += int(np.prod(inits[node.input[2]].dims))
        if node.op_type == "Add" and any(i in inits and len(inits[i].dims) >= 1
                                         and int(np.prod(inits[i].dims)) > 1 for i in node.input):
            # bias added after a MatMul (skl2onnx style)
            dense_params += sum(int(np.prod(inits[i].dims)) for i in node.input if i in inits)
        if node.op_type in ("TreeEnsembleClassifier", "TreeEnsemble"):
            op = node.op_type
            attrs = {a.name: a for a in node.attribute}
            if "nodes_treeids" in attrs:
                ids = list(attrs["nodes_treeids"].ints)
                modes = [s.decode() for s in attrs["nodes_modes"].strings]
                trees = len(set(ids))
                nodes = len(ids)
                leaves = sum(1 for x in modes if x == "LEAF")
    def io(v):
        t = v.type.tensor_type
        dims = [d.dim_param or str(d.dim_value) for d in t.shape.dim]
        return f"`{v.name}`: {onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name} [{', '.join(dims)}]"
    return {
        "meta": meta,
        "op": op,
        "layers": ([dense[0][0]] + [d[1] for d in dense]) if dense else [],
        "dense_params": dense_params,
        "node_ops": [n.op_type for n in m.graph.node],
        "trees": trees,
        "nodes": nodes,
        "leaves": leaves,
        "inputs": [io(v) for v in m.graph.input],
        "outputs": [io(v) for v in m.graph.output],
        "ir_version": m.ir_version,
        "opsets": ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in m.opset_import),
        "producer": f"{m.producer_name} {m.producer_version}",
        "doc": m.doc_string,
        "bytes": os.path.getsize(path),
        "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
    }


def benign_rows(metrics: dict) -> int:
    """Benign training rows (every trigger) of train.py's metrics."""
    return sum(sum(c.get("benign", 0) for c in f["counts"].values())
               for f in metrics["data"]["train"]["files"])


def fmt(v, pct=False) -> str:
    if v is None:
        return "n/a"
    return f"{v:.2%}" if pct else f"{v:.3f}"


def class_table(ev: dict, labels: List[str]) -> List[str]:
    out = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for c in labels:
        pc = ev["per_class"][c]
        out.append(f"| {c} | {fmt(pc['precision'])} | {fmt(pc['recall'])} | {fmt(pc['f1'])} "
                   f"| {pc['support']} |")
    return out


def confusion_table(ev: dict) -> List[str]:
    labels = ev["confusion_matrix"]["labels"]
    out = ["| truth \\ predicted | " + " | ".join(labels) + " |",
           "|---|" + "---:|" * len(labels)]
    for c, row in zip(labels, ev["confusion_matrix"]["matrix"]):
        out.append(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
    return out


def data_table(files: List[dict], labels: List[str]) -> List[str]:
    out = ["| file | sha256 (first 12) | trigger | " + " | ".join(labels) + " | unlabelled |",
           "|---|---|---|" + "---:|" * (len(labels) + 1)]
    for f in files:
        for i, t in enumerate([t for t in ("early", "end", "host")
                               if t != "host" or sum(f["counts"].get("host", {}).values())]):
            counts = f["counts"][t]
            name = f"`{f['path']}`" if i == 0 else ""
            sha = f["sha256"][:12] if i == 0 else ""
            unl = str(f["unlabeled_rows"]) if i == 0 else ""
            out.append(f"| {name} | {sha} | {t} | " + " | ".join(str(counts[c]) for c in labels)
                       + f" | {unl} |")
    return out


def build(metrics: dict, facts: dict, data_desc: str, command: str, model_rel: str) -> str:
    meta = facts["meta"]
    mdl = metrics["model"]
    labels = meta["tidewatch.labels"].split(",")
    features = meta["tidewatch.features"].split(",")
    name, version = meta["tidewatch.model_name"], meta["tidewatch.model_version"]
    L: List[str] = []
    a = L.append

    a(f"# Model card: `{name}` {version}")
    a("")
    a("Tidewatch flow classifier: labels each flow as one of "
      + ", ".join(f"`{c}`" for c in labels) + ".")
    a("")
    a("## What it is")
    a("")
    family = mdl.get("family", "mlp" if "layers" in mdl else "forest")
    if family == "mlp":
        layers = facts["layers"] or mdl["layers"]
        cw = ("balanced class weights as per-row sample weights"
              if mdl["config"].get("class_weight") == "balanced" else "no class weighting")
        stop = (f"early stopping on {mdl['validation_fraction']:.0%} of the training rows after "
                f"{mdl['n_iter_no_change']} epochs without improvement: {mdl['n_iter']} epochs"
                if mdl.get("early_stopping") else f"{mdl['n_iter']} epochs")
        if not mdl.get("converged", True):
            stop += f" (stopped at max_iter={mdl['max_iter']}, not converged)"
        a(f"- **Type:** scikit-learn `{mdl['type']}` (multi-layer perceptron: "
          f"{mdl['activation']} hidden layers, softmax output; {mdl['solver']}, "
          f"L2 alpha={mdl['alpha']:g}, {cw}, {stop}; seed {mdl['seed']}), "
          f"trained in {mdl.get('dtype', 'float32')}.")
        a("- **Input transform (inside the model):** each raw feature x becomes "
          "sign(x)·log(1+|x|) (float32), then is standardised with the training mean and "
          "standard deviation; the standardisation is folded into the first layer's weights.")
        a(f"- **Size:** layers {' → '.join(str(n) for n in layers)} "
          f"({len(layers) - 2} hidden), {facts['dense_params'] or mdl['n_parameters']:,} "
          f"parameters ({mdl.get('multiply_adds_per_row', 0):,} multiply-adds per row); "
          f"{len(facts['node_ops'])} ONNX nodes ({', '.join(sorted(set(facts['node_ops'])))}); "
          f"file `{model_rel}` is {facts['bytes']:,} bytes, sha256 `{facts['sha256']}`.")
        proba_text = "softmax of the last layer; `label` is its arg-max"
    else:
        boot = "bootstrap samples" if mdl.get("bootstrap", True) else "no bootstrap"
        a(f"- **Type:** scikit-learn `{mdl['type']}` ({boot}, `max_features={mdl['max_features']}`, "
          f"`class_weight={mdl['class_weight']}`, `min_samples_leaf={mdl['min_samples_leaf']}`, "
          f"seed {mdl['seed']}), exported to ONNX as one `{facts['op']}` node.")
        a(f"- **Size:** {facts['trees']} trees, max depth {mdl['max_depth_actual']} "
          f"(limit {mdl['max_depth_limit']}, mean {mdl['mean_depth']:.1f}), {facts['nodes']:,} nodes "
          f"({facts['leaves']:,} leaves); file `{model_rel}` is {facts['bytes']:,} bytes "
          f"({facts['bytes'] / 1048576:.1f} MiB), sha256 `{facts['sha256']}`.")
        proba_text = "mean of the trees' leaf class shares"
    a(f"- **ONNX:** IR version {facts['ir_version']}, opsets {facts['opsets']}; "
      f"producer `{facts['producer']}`.")
    a(f"- **Input:** {'; '.join(facts['inputs'])} — one row per flow, features in schema order.")
    if "tidewatch.benign_medians" in facts["meta"]:
        a("- **Benign medians:** metadata `tidewatch.benign_medians`, the median of each feature over the "
          f"{benign_rows(metrics):,} benign training rows (every trigger); the engine's alert explanations "
          "set one feature at a time to it (occlusion) and show it as the feature's typical value.")
    a(f"- **Outputs:** {'; '.join(facts['outputs'])} — `label` is the index into the class list "
      f"below, `probabilities` are the per-class scores ({proba_text}).")
    chk = metrics.get("onnx_check", {})
    if chk:
        a(f"- **Export check:** ONNX Runtime {chk['onnxruntime_version']} and scikit-learn agree on "
          f"{chk['label_agreement']}/{chk['rows']} test labels; max probability difference "
          f"{chk['max_abs_proba_diff']:.1e} (tolerance {chk['proba_tolerance']:g}).")
    sw = metrics.get("sweep")
    if sw:
        where = ("held-out flows of the training data" if sw["scored_on"] == "val"
                 else "the test split (so the test figures below are optimistic)")
        fams = sorted({r.get("family", "forest") for r in sw["results"]})
        speed = ""
        if sw.get("min_rows_per_s"):
            n_ok = sum(1 for r in sw["results"] if r.get("eligible", True))
            speed = (f", among the {n_ok} that reach {sw['min_rows_per_s']:,.0f} rows/s "
                     "(ONNX Runtime, batch 256, one thread, per CPU-second)")
        a(f"- **Hyper-parameters** chosen by a sweep of {len(sw['results'])} configurations "
          f"({' and '.join(fams)}) scored on {where} by macro-F1 minus benign FPR{speed}; chosen: "
          + ", ".join(f"{k}={v}" for k, v in sw["chosen"].items()) + ".")
    a("")

    a("## Feature schema")
    a("")
    a(f"Schema `{meta['tidewatch.schema']}` version {meta['tidewatch.schema_version']}, "
      f"{len(features)} features (read from the model's metadata; the engine must feed "
      "exactly these, in this order, as float32):")
    a("")
    for i, f in enumerate(features):
        a(f"{i}. `{f}`")
    a("")
    a("Flow metadata (addresses, ports, timestamps, flow id, protocol) is not used as input.")
    a("")

    a("## Classes")
    a("")
    a("Output index → class: " + ", ".join(f"{i} = `{c}`" for i, c in enumerate(labels)) + ".")
    a("")

    a("## Data")
    a("")
    a("All data is **synthetic**: packet captures made by `pcaps/generate.py`, turned into "
      "feature rows by `tidewatchd features`. Each flow gives up to two rows: `early` "
      f"({TRIGGER_TEXT['early']}) and `end` ({TRIGGER_TEXT['end']}); one model is trained on "
      "both. Unlabelled rows are skipped.")
    a("")
    a(f"{data_desc}")
    a("")
    for split in ("train", "test"):
        d = metrics["data"][split]
        a(f"**{split.capitalize()}:** {d['labeled_rows']:,} labelled rows "
          f"({d['unlabeled_rows']:,} unlabelled skipped).")
        a("")
        L.extend(data_table(d["files"], labels))
        a("")

    a("## Test results")
    a("")
    a("Predictions of the exported ONNX model on the test rows. Macro-F1 averages the classes "
      "that have test rows; benign FPR is the share of benign rows predicted as any attack.")
    thr = metrics.get("thresholds")
    if thr:
        a("")
        a("The model carries per-label alert thresholds (ONNX metadata `tidewatch.thresholds`): a row "
          "whose arg-max label scores below its threshold is reported `benign`. They were chosen on "
          "held-out training captures for a benign false-alarm share of at most "
          f"{metrics['threshold_selection']['max_fpr']:.2%} per trigger; the figures below apply them "
          "(plain arg-max figures in brackets): " + ", ".join(f"`{k}` {v:.4g}" for k, v in thr.items()) + ".")
    for t in [t for t in ("early", "end", "host") if t in metrics["test"]
              and (t != "host" or metrics["test"][t]["rows"])]:
        ev = metrics["test"][t]
        a("")
        a(f"### trigger = `{t}` ({ev['rows']:,} rows)")
        a("")
        if not ev["rows"]:
            a("No labelled test rows.")
            continue
        raw = (metrics.get("test_argmax") or {}).get(t) if thr else None
        a(f"Macro-F1 **{fmt(ev['macro_f1'])}**, accuracy {fmt(ev['accuracy'])}, benign FPR "
          f"**{fmt(ev['benign_fpr'], pct=True)}** ({ev['benign_false_positives']} of "
          f"{ev['benign_rows']} benign rows)"
          + (f" [arg-max: macro-F1 {fmt(raw['macro_f1'])}, benign FPR {fmt(raw['benign_fpr'], pct=True)}]"
             if raw else "") + ".")
        a("")
        L.extend(class_table(ev, labels))
        a("")
        a("Confusion matrix (rows = truth, columns = prediction):")
        a("")
        L.extend(confusion_table(ev))
    a("")
    rs = metrics.get("train_resubstitution_macro_f1")
    if rs:
        a(f"For comparison, macro-F1 on the training rows themselves: early {fmt(rs['early'])}, "
          f"end {fmt(rs['end'])}.")
        a("")

    a("## Inference throughput")
    a("")
    th = metrics.get("throughput", {})
    if th.get("batches"):
        mach = th.get("machine", {})
        a(f"ONNX Runtime {metrics['versions']['onnxruntime']} (CPU), {th['threads']} intra-op "
          f"thread, on {mach.get('cpu', '?')} ({mach.get('logical_cpus', '?')} logical CPUs); "
          "about 1 s per batch size, test rows reused.")
        a("")
        cpu = all("rows_per_cpu_s" in b for b in th["batches"].values())
        if cpu:
            a("Rows per CPU-second counts only the inference thread's CPU time, so it does not "
              "depend on other load on the machine; it is the per-core figure.")
            a("")
            a("| batch size | rows/s | rows per CPU-second | µs per call |")
            a("|---:|---:|---:|---:|")
            for b in th["batches"].values():
                a(f"| {b['batch_size']} | {b['rows_per_s']:,.0f} | {b['rows_per_cpu_s']:,.0f} "
                  f"| {b['us_per_call']:,.1f} |")
        else:
            a("| batch size | rows/s | µs per call |")
            a("|---:|---:|---:|")
            for b in th["batches"].values():
                a(f"| {b['batch_size']} | {b['rows_per_s']:,.0f} | {b['us_per_call']:,.1f} |")
    else:
        a("Not measured.")
    a("")

    a("## Reproduce")
    a("")
    v = metrics.get("versions", {})
    a("With the pinned environment of `models/train/requirements.txt` "
      f"(Python {v.get('python')}, scikit-learn {v.get('scikit-learn')}, skl2onnx "
      f"{v.get('skl2onnx')}, onnx {v.get('onnx')}, onnxruntime {v.get('onnxruntime')}):")
    a("")
    a("```sh")
    a(command)
    a("```")
    a("")
    a("Training is seeded: the same inputs and environment give a byte-identical model.")
    a("")

    a("## Known blind spots")
    a("")
    a("- Trained and tested only on synthetic traffic from `pcaps/generate.py` in a single-host "
      "lab; scores here measure how well it separates that generator's classes, not real attacks.")
    a("- Not yet validated on real captures or real attacks; expect a higher benign false-positive "
      "rate and lower recall on real networks, and retrain/evaluate before trusting an alert.")
    a("- Attacks unlike the generator's (other tools, slow/low-rate variants, encrypted or "
      "mimicking benign traffic) may be missed; classes outside the six are forced into one of them.")
    a("- `early` rows see only the first packets of a flow; compare the two tables above before "
      "acting on early verdicts.")
    if family == "mlp":
        a("- A neural network extrapolates smoothly beyond the training range instead of "
          "saturating like trees: feature values far outside what the generator produces can "
          "get confident but arbitrary scores (the log transform softens, not removes, this).")
    a("")
    return "\n".join(L)

# --------------------------------------------------------------------------- lab card


def _pct(v):
    return "–" if v is None else f"{100 * v:.2f} %"


def _f3(v):
    return "–" if v is None else f"{v:.3f}"


def md_eval(m, title, raw=None):
    """A metrics block: headline, per-class table, confusion matrix (`raw`: arg-max metrics)."""
    labels = m["confusion_matrix"]["labels"]
    head = (f"**{title}** — {m['rows']:,} rows, macro-F1 **{_f3(m['macro_f1'])}** "
            f"(over {', '.join(m['macro_f1_classes']) or 'no class'}), benign FPR **{_pct(m['benign_fpr'])}** "
            f"({m['benign_false_positives']} of {m['benign_rows']:,})")
    if raw:
        head += f" [arg-max: macro-F1 {_f3(raw['macro_f1'])}, benign FPR {_pct(raw['benign_fpr'])}]"
    out = [head + ".", "", "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for c in labels:
        p = m["per_class"][c]
        if p["support"] == 0 and p["precision"] == 0:
            out.append(f"| {c} | – | – | – | 0 |")
        else:
            out.append(f"| {c} | {p['precision']:.3f} | {p['recall']:.3f} | {p['f1']:.3f} | {p['support']:,} |")
    out += ["", "Confusion (rows = truth, columns = prediction):", "",
            "| truth \\ pred | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for c, row in zip(labels, m["confusion_matrix"]["matrix"]):
        out.append(f"| **{c}** | " + " | ".join(f"{v:,}" for v in row) + " |")
    return "\n".join(out)


def summary_table(evs, raw=None):
    """One line per trigger group: macro-F1, each class F1, benign FPR."""
    out = ["| " + " | ".join(["group", "rows", "macro-F1"] + [f"F1 {c}" for c in LABELS[1:]]
                             + ["benign FPR"] + (["arg-max macro-F1", "arg-max FPR"] if raw else [])) + " |",
           "|---|" + "---:|" * (len(LABELS) + 2 + (2 if raw else 0))]
    for g, m in evs.items():
        cells = [f"`{g}`", f"{m['rows']:,}", _f3(m["macro_f1"])]
        for c in LABELS[1:]:
            p = m["per_class"][c]
            cells.append("–" if p["support"] == 0 else f"{p['f1']:.3f}")
        cells.append(_pct(m["benign_fpr"]))
        if raw:
            r = raw.get(g)
            cells += [_f3(r["macro_f1"]) if r else "–", _pct(r["benign_fpr"]) if r else "–"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def class_targets(evs, kmid, where):
    """Issue-11 generalisation targets on a set of evaluations {group: metrics}."""
    checks = []
    if "end" in evs and evs["end"]["rows"]:
        v = evs["end"]["macro_f1"]
        checks.append((f"{where}: macro-F1 at flow end", "≥ 0.90", _f3(v), v is not None and v >= 0.90))
    if kmid in evs and evs[kmid]["rows"]:
        v = evs[kmid]["macro_f1"]
        checks.append((f"{where}: macro-F1 early {kmid}", "≥ 0.85", _f3(v), v is not None and v >= 0.85))
    worst = None
    for g in ("end", kmid):
        m = evs.get(g)
        if not m or not m["rows"]:
            continue
        for c in m["macro_f1_classes"]:
            f1 = m["per_class"][c]["f1"]
            if worst is None or f1 < worst[0]:
                worst = (f1, f"{c} at {g}")
    if worst:
        checks.append((f"{where}: F1 of every class (end, {kmid})", "≥ 0.85",
                       f"{worst[0]:.3f} (lowest: {worst[1]})", worst[0] >= 0.85))
    return checks


def describe_caps(caps, show=6):
    import re
    kinds = collections.defaultdict(list)
    for c in caps:
        kinds[re.sub(r"\d+$", "", c)].append(c)
    return ", ".join(", ".join(f"`{x}`" for x in v) if len(v) <= show else f"{len(v)} `{k}*` captures"
                     for k, v in sorted(kinds.items()))


def feedback_text(fb: Optional[dict], capture_weight: Optional[dict] = None) -> str:
    """The card's line on the analysts' feedback: models/train/feedback.py's summary (lab.py
    evaluate --feedback-summary), None when the model was built without a feedback file."""
    if not fb:
        return "Analysts' feedback (`make model FEEDBACK=...`): no feedback file."
    d = fb["used_decisions"]
    bad = ", ".join(f"{r} {n}" for r, n in fb["unusable"].items() if n) or "none"
    w = (capture_weight or {}).get("feedback")
    if fb["rows"]:
        rows = ", ".join(f"{c} {n:,}" for c, n in fb["rows_by_label"].items())
        trained = (f"{fb['rows']:,} training rows ({rows}) from {len(fb['captures'])} capture(s), "
                   + (f"weighted {w:g} x (`--capture-weight feedback={w:g}`)" if w else "not weighted")
                   + ", never in the threshold validation")
    else:
        trained = "no row selected, so not trained on"
    notes = "".join(f" Note: {t}." for t in fb.get("notes") or [])
    return (f"Analysts' feedback (`make model FEEDBACK=...`, `models/train/feedback.py`): `{fb['feedback_file']}` "
            f"(sha256 `{fb['sha256'][:12]}`), {fb['entries']} decisions: {fb['used']} used "
            f"({d['false_positive']} false positive(s) relabelled benign, {d['confirmed']} confirmed), "
            f"{fb['overridden']} overridden by a later decision, {fb['unusable_total']} unusable ({bad}); "
            f"{trained}.{notes}")


def write_lab_card(path, m, tm, note="", data_text="", command="", blind_spots=""):
    """models/<name>/MODEL_CARD.md of the lab model from lab.py's metrics (`m`) and train.py's (`tm`)."""
    m["card"] = {"note": note, "data_text": data_text, "command": command, "blind_spots": blind_spots}
    mod = tm["model"]
    labels = LABELS
    st = {k: v for k, v in mod.items() if k in ("layers", "n_parameters", "n_iter", "type")}
    thr_b = (m.get("throughput") or {}).get("batches", {})
    feats = m["model_meta"]["tidewatch.features"].split(",")
    kmid = m.get("kmid") or f"K={m['ks'][len(m['ks']) // 2]}"
    thr = m.get("thresholds")
    med = "tidewatch.benign_medians" in m["model_meta"]
    L = []
    a = L.append
    a(f"# Model card: `{mod['name']}` {mod['version']}")
    a("")
    a("Tidewatch flow classifier trained on the **lab corpus**: real tools (Debian packages) run in "
      "network namespaces by `pcaps/lab/make-lab.sh`, labelled from the generator's own record of which "
      "host ran which tool against which target when (never from traffic statistics). Classes: "
      + ", ".join(f"`{c}`" for c in labels) + ".")
    a("")
    if note:
        a(note)
        a("")
    # ---- targets
    lt = m["lab_test"]
    pub = [r for r in m.get("public_attacks") or [] if not r.get("missing")]
    checks = []
    if "end" in lt:
        checks.append(("unseen lab seeds: macro-F1 at flow end", "≥ 0.95", _f3(lt["end"]["macro_f1"]),
                       (lt["end"]["macro_f1"] or 0) >= 0.95))
    if kmid in lt:
        checks.append((f"unseen lab seeds: macro-F1 early {kmid}", "≥ 0.90", _f3(lt[kmid]["macro_f1"]),
                       (lt[kmid]["macro_f1"] or 0) >= 0.90))
    checks += class_targets(lt, kmid, "unseen lab seeds (issue 11)")
    fprs = [(v["benign_fpr"], g) for g, v in lt.items() if v["benign_fpr"] is not None]
    if fprs:
        w = max(fprs)
        checks.append(("unseen lab seeds: benign FPR, worst trigger group", "≤ 0.5 %", f"{_pct(w[0])} ({w[1]})",
                       w[0] <= 0.005))
    ev = m.get("everyday")
    ev_tr = m.get("everyday_trained") or []
    if ev:
        w = max(((v["fpr"] or 0), g, v["alarms"], v["rows"]) for g, v in ev["groups"].items())
        na, nr = sum(v["alarms"] for v in ev["groups"].values()), sum(v["rows"] for v in ev["groups"].values())
        checks.append((f"everyday captures{' not trained on' if ev_tr else ''} ({', '.join(ev['captures'])}): "
                       "rows alarmed, worst trigger group", "≤ 0.5 %",
                       f"{_pct(w[0])} ({w[1]}, {w[2]}/{w[3]}); all rows {_pct(na / nr if nr else None)} ({na}/{nr})",
                       w[0] <= 0.005))
    pp = m.get("public_protocols")
    if pp and pp.get("heldout_source"):
        pool = collections.defaultdict(lambda: [0, 0])
        for src, per in pp["heldout_source"].items():
            for g, v in per.items():
                if isinstance(v, dict):
                    pool[g][0] += v["alarms"]
                    pool[g][1] += v["rows"]
        w = max((a_ / n_, g) for g, (a_, n_) in pool.items() if n_)
        ws = max(((v["fpr"] or 0), f"{src} `{g}`, {v['alarms']}/{v['rows']}")
                 for src, per in pp["heldout_source"].items()
                 for g, v in per.items() if isinstance(v, dict) and v["rows"] >= 20)
        checks.append(("public protocol captures, held-out sources (fold models): rows alarmed, worst trigger "
                       "group over all sources", "≤ 0.5 %",
                       f"{_pct(w[0])} ({w[1]}); worst source {_pct(ws[0])} ({ws[1]})", w[0] <= 0.005))
    elif pp and pp.get("all"):
        w = max(((v["fpr"] or 0), g) for g, v in pp["all"].items())
        checks.append(("public protocol captures (no source trained on): rows alarmed, worst trigger group",
                       "≤ 0.5 %", f"{_pct(w[0])} ({w[1]})", w[0] <= 0.005))
    ht = m.get("heldout_tools")
    if ht:
        checks += class_targets(ht["results"], kmid, "other tools (held-out generator)")
        hb = [((v["fpr"] or 0), g) for g, v in ht["benign"].items() if v["rows"]]
        if hb:
            w = max(hb)
            checks.append(("other-tools captures: benign FPR, worst trigger group", "≤ 0.5 %",
                           f"{_pct(w[0])} ({w[1]})", w[0] <= 0.005))
    if pub:
        ok = sum(r["match"] for r in pub)
        checks.append(("public attack captures: majority label = family", f"≥ 19 of {len(pub)}",
                       f"{ok} of {len(pub)}", ok >= min(19, len(pub))))
    xs = ((m.get("synthetic_test_xgen") or {}).get("groups")
          or (m.get("synthetic_test") if not m.get("trained_with_synthetic") else None))
    if xs:
        checks += class_targets(xs, kmid, "lab-only model on synthetic seeds")
    if m.get("holdout", {}).get("exact"):
        checks += class_targets(m["holdout"]["exact"], kmid, "held-out tool variants")
    ttd = (m.get("time_to_detect") or {}).get("per_class") or {}
    ttd_h = (m.get("time_to_detect_heldout") or {}).get("per_class") or {}
    for tag, tt in (("lab seeds", ttd), ("other tools", ttd_h)):
        for c, r in tt.items():
            mt = r["metric"]
            mx = r[mt]["max"]
            got = "–" if mx is None else (f"max {mx:,.0f}" if isinstance(mx, int) or mx >= 100 else f"max {mx:.3g}")
            if mt == "seconds":
                got += " s"
            checks.append((f"time to detect, {tag}, {c} ({'seconds' if mt == 'seconds' else mt.replace('_', ' ')})",
                           r["target"], f"{got}; {r['never']} of {r['episodes']} never", r["met"]))
    thr256 = ((m.get("throughput") or {}).get("batches") or {}).get("256")
    if thr256:
        checks.append(("ONNX Runtime rows/s per core, batch 256", "≥ 2,000,000",
                       f"{thr256['rows_per_cpu_s']:,.0f}", thr256["rows_per_cpu_s"] >= 2e6))
    a("| target (issues 6 and 11) | wanted | this model | met |")
    a("|---|---|---|---|")
    for name, want, got, ok in checks:
        a(f"| {name} | {want} | {got} | {'yes' if ok else '**no**'} |")
    a("")
    a("All figures apply the model's alert thresholds (below), as the engine does, unless marked arg-max.")
    a("")
    # ---- what it is
    a("## What it is")
    a("")
    a(f"- **Type:** {st.get('type', '?')} layers {'-'.join(map(str, st.get('layers', [])))} "
      f"({st.get('n_parameters', '?')} parameters, {st.get('n_iter', '?')} epochs), input "
      "sign(x)·log(1+|x|) then standardised (inside the graph); one model for early, host and end rows.")
    ops = ", ".join(f"{d} {v}" for d, v in mod["onnx"]["opset_import"].items())
    a(f"- **ONNX:** opset {ops}, IR {mod['onnx']['ir_version']} (loads in ONNX Runtime 1.31); input "
      f"`features` float32 [N, {len(feats)}]; outputs `label` int64 [N] (arg-max), `probabilities` float32 "
      f"[N, {len(labels)}] (no ZipMap); metadata `tidewatch.schema`/`schema_version`/`features`/`labels`/"
      f"`model_name`/`model_version`/`thresholds`{'/`benign_medians`' if med else ''}. "
      f"File {mod['file_bytes']:,} bytes, sha256 `{mod['sha256']}`.")
    a(f"- **Schema:** `{m['model_meta']['tidewatch.schema']}` v{m['model_meta']['tidewatch.schema_version']}, "
      f"{len(feats)} features exported by the engine (`tidewatchd features`; see FEATURES.md). "
      "No feature is computed in Python; addresses, ports and timestamps are not inputs.")
    if med:
        a(f"- **Benign medians:** metadata `tidewatch.benign_medians`, the median of each feature over the "
          f"{benign_rows(tm):,} benign training rows (every trigger); the engine's alert explanations set one "
          "feature at a time to it (occlusion) and show it as the feature's typical value.")
    a("")
    # ---- thresholds
    ts = m.get("threshold_selection")
    a("## Alert thresholds")
    a("")
    if thr and ts:
        a(f"ONNX metadata `tidewatch.thresholds` = `{json.dumps(thr)}`. The engine reports a row `benign` when "
          "its arg-max label's probability is below that label's threshold (the scores still show the model's "
          "view). Chosen by `train.py --thresholds validation`: whole training captures held out "
          f"({describe_caps(ts['validation_captures'])}; {ts['validation_rows']:,} rows), the model fitted on the "
          f"other {ts['fit_rows']:,} rows, then per label the smallest threshold such that the benign "
          f"false-alarm share of the validation captures stays ≤ {ts['max_fpr']:.2%} in every trigger group "
          "(a margin under the 0.5 % target). "
          + ("The shipped model is that fit." if ts.get("final_fit") == "rest" else
             "The shipped model was then refitted on all training rows with the same thresholds.")
          + ("" if ts["met"] else f" **Not met in every group** (labels at the cap: {ts['stuck_labels']})."))
        a("")
        a("| validation group | benign rows | false alarms, arg-max | false alarms, thresholded | allowed |")
        a("|---|---:|---:|---:|---:|")
        for g, v in ts["groups"].items():
            a(f"| `{g}` | {v['benign_rows']:,} | {v['false_alarms_argmax']} ({_pct(v['fpr_argmax'])}) | "
              f"{v['false_alarms_thresholded']} ({_pct(v['fpr_thresholded'])}) | {v['allowed_false_alarms']} |")
        a("")
        a("Validation recall each threshold costs: " + ", ".join(
            f"{c} {v['recall_argmax']:.3f} → {v['recall_thresholded']:.3f}" for c, v in ts["recall"].items()) + ".")
    else:
        a("None: this model reports the plain arg-max.")
    a("")
    # ---- data
    a("## Data")
    a("")
    a(data_text)
    a("")
    a(feedback_text(m.get("feedback"), mod.get("capture_weight")))
    a("")
    tr = tm["data"]["train"]
    cnt = collections.Counter()
    for f in tr["files"]:
        for t, d in f["counts"].items():
            for c, n in d.items():
                cnt[(t, c)] += n
    a(f"Training rows ({tr['labeled_rows']:,}; early rows of every K plus host and end rows):")
    a("")
    a("| trigger | " + " | ".join(labels) + " |")
    a("|---|" + "---:|" * len(labels))
    for t in ("early", "host", "end"):
        if t == "host" and not any(cnt[(t, c)] for c in labels):
            continue
        a(f"| {t} | " + " | ".join(f"{cnt[(t, c)]:,}" for c in labels) + " |")
    a("")
    # ---- results per K
    a("## Results on unseen lab seeds")
    a("")
    a(f"Lab test seeds {' '.join(map(str, m['test_seeds']))} (never trained on). `K=k`: the row the engine "
      "writes after a flow's first k packets (`--early-packets k`; only flows that reach k packets have one); "
      "`host`: a flow's first packet, classified at once because its source or destination crossed a "
      "host-context bound (schema v4); `end`: at flow end. Macro-F1 averages the classes with test rows; "
      "benign FPR = share of benign rows called an attack.")
    a("")
    a(summary_table(lt, m.get("lab_test_argmax")))
    a("")
    for name, e in lt.items():
        a(md_eval(e, name, (m.get("lab_test_argmax") or {}).get(name)))
        a("")
    if m.get("end_by_size"):
        a("### End rows by flow size")
        a("")
        a("A flow of one packet (a SYN or UDP datagram nobody answered: filtered scans, floods) ends by "
          "timeout or at the end of the capture; such flows carry almost nothing to tell a scan from a flood.")
        a("")
        a(summary_table({k: v for k, v in m["end_by_size"].items() if v["rows"]}))
        a("")
    if m.get("per_variant"):
        a("### Per tool variant")
        a("")
        a("What the test seeds' flows of each tool variant are called (label/variant from the lab's action log):")
        a("")
        names = list(m["per_variant"])
        a("| variant | " + " | ".join(names) + " |")
        a("|---|" + "---|" * len(names))
        keys = sorted(set().union(*[set(v) for v in m["per_variant"].values()]))
        for k in keys:
            cells = []
            for n in names:
                d = m["per_variant"][n].get(k, {})
                cells.append(", ".join(f"{lab} {c:,}" for lab, c in sorted(d.items(), key=lambda x: -x[1])) or "–")
            a(f"| `{k}` | " + " | ".join(cells) + " |")
        a("")
    # ---- per generator
    a("## Per generator")
    a("")
    a("| data | model | group | rows | macro-F1 | lowest class F1 | benign FPR |")
    a("|---|---|---|---:|---:|---|---:|")

    def gen_rows(evs, data, model):
        for g, e in evs.items():
            if not e["rows"]:
                continue
            low = min(((e["per_class"][c]["f1"], c) for c in e["macro_f1_classes"]), default=None)
            a(f"| {data} | {model} | `{g}` | {e['rows']:,} | {_f3(e['macro_f1'])} | "
              f"{'–' if low is None else f'{low[0]:.3f} ({low[1]})'} | {_pct(e['benign_fpr'])} |")
    gen_rows(lt, "lab, unseen seeds", "this model")
    if m.get("synthetic_test"):
        gen_rows(m["synthetic_test"], "synthetic (pcaps/generate.py) test seeds",
                 "this model"
                 + (" (trained with synthetic seeds)" if m.get("trained_with_synthetic") else " (lab only)"))
    if m.get("synthetic_test_xgen"):
        gen_rows(m["synthetic_test_xgen"]["groups"], "synthetic test seeds", "lab-only model")
    if m.get("holdout", {}).get("exact"):
        gen_rows(m["holdout"]["exact"], "lab, held-out tool variants only", "model trained without them")
    if m.get("heldout_tools"):
        gen_rows(m["heldout_tools"]["results"], "other tools (" + " ".join(m["heldout_tools"]["seeds"]) + ")",
                 "this model (never saw those tools)")
    pp0 = m.get("public_protocols") or {}
    trained_pub = bool(pp0.get("heldout_source"))
    for g, v in (pp0.get("all") or {}).items():
        a(f"| public protocol captures (all benign) | "
          f"this model{' (every source in its training data)' if trained_pub else ''} "
          f"| `{g}` | {v['rows']:,} | – | – | {_pct(v['fpr'])} |")
    if trained_pub:
        pool = collections.defaultdict(lambda: [0, 0])
        for src, per in pp0["heldout_source"].items():
            for g, v in per.items():
                if isinstance(v, dict):
                    pool[g][0] += v["alarms"]
                    pool[g][1] += v["rows"]
        for g, (na, nr) in pool.items():
            a(f"| public protocol captures (all benign), held-out sources | fold models (never saw that source) "
              f"| `{g}` | {nr:,} | – | – | {_pct(na / nr if nr else None)} |")
    pa0 = [r for r in m.get("public_attacks") or [] if not r.get("missing")]
    if pa0:
        a(f"| public attack captures | this model | majority end label | {len(pa0)} captures | "
          f"{sum(r['match'] for r in pa0)} of {len(pa0)} right | – | – |")
    a("")
    ht = m.get("heldout_tools")
    if ht:
        a("## Other tools (held-out generator)")
        a("")
        a(f"Captures {', '.join('`lab-' + t.replace('heldout', 'heldout-seed') + '.pcap`' for t in ht['seeds'])}: "
          "the same attack classes made by tools the model never saw in training (masscan/nping scans, "
          "nping/scapy floods, medusa/ncrack brute force, dns2tcp/python DNS tunnels, wget/python/openssl "
          "beacons), with the lab's benign clients. Evaluated exactly like the unseen lab seeds.")
        a("")
        a(summary_table(ht["results"], ht.get("results_argmax")))
        a("")
        for name, e in ht["results"].items():
            a(md_eval(e, f"other tools, {name}", (ht.get("results_argmax") or {}).get(name)))
            a("")
        a("Per tool and variant (label/tool:variant from the generator's log; what the model calls the rows):")
        a("")
        names = list(ht["per_tool"])
        a("| label/tool:variant | " + " | ".join(f"`{n}` recall" for n in names) + " | calls (end) |")
        a("|---|" + "---:|" * len(names) + "---|")
        keys = sorted(set().union(*[set(v) for v in ht["per_tool"].values()]))
        for k in keys:
            lab = k.split("/", 1)[0]
            cells = []
            for n in names:
                d = ht["per_tool"][n].get(k)
                cells.append(f"{d.get(lab, 0) / sum(d.values()):.3f} ({sum(d.values()):,})" if d else "–")
            d = ht["per_tool"].get("end", {}).get(k, {})
            calls = ", ".join(f"{x} {c:,}" for x, c in sorted(d.items(), key=lambda x: -x[1])) or "–"
            a(f"| `{k}` | " + " | ".join(cells) + f" | {calls} |")
        a("")
    if m.get("synthetic_test_xgen") or (m.get("synthetic_test") and not m.get("trained_with_synthetic")):
        xs = (m.get("synthetic_test_xgen") or {}).get("groups") or m["synthetic_test"]
        a("Cross-generator: a model trained on lab captures only, tested on the synthetic generator's test seeds:")
        a("")
        for name, e in xs.items():
            if e["rows"]:
                a(md_eval(e, f"synthetic, {name}"))
                a("")
    # ---- hold-out
    if "holdout" in m:
        ho = m["holdout"]
        a("## Held-out tools")
        a("")
        a("A second model, same configuration, trained without the flows of "
          + ", ".join(f"`{v}`" for v in ho["variants"])
          + " (left out of the training seeds; thresholds chosen again without them), then tested on exactly "
          "those variants' flows of the test seeds. Recall = share given their true class.")
        a("")
        a("| held-out variant | rows | recall, model without it | recall, full model | model without it calls them |")
        a("|---|---|---:|---:|---|")
        for v, per in ho["results"].items():
            if v.startswith("_"):
                continue
            for name, r in per.items():
                calls = ", ".join(f"{k} {n}" for k, n in sorted(r["holdout_model_calls_them"].items(),
                                                                key=lambda x: -x[1]))
                a(f"| `{v}` {name} | {r['rows']:,} | {r['recall_holdout_model']:.3f} | "
                  f"{r['recall_full_model']:.3f} | {calls} |")
        allf = ho["results"].get("_all_rows_macro_f1", {})
        if allf:
            a("")
            a("Macro-F1 of the model without them on all test rows: " +
              ", ".join(f"{k} {_f3(v)}" for k, v in allf.items()) + ".")
        if ho.get("with_benign"):
            a("")
            a("The held-out variants plus every benign test row (precision then counts false alarms too):")
            a("")
            a(summary_table(ho["with_benign"]))
        a("")
    # ---- false alarms
    a("## False alarms on everyday traffic")
    a("")
    lb = m.get("lab_benign") or {}
    if lb:
        a("Benign rows of the unseen lab seeds, alarmed (any attack label):")
        a("")
        a("| group | benign rows | alarmed | share | arg-max share | alarms as |")
        a("|---|---:|---:|---:|---:|---|")
        for g, v in lb.items():
            a(f"| `{g}` | {v['rows']:,} | {v['alarms']} | {_pct(v['fpr'])} | {_pct(v['fpr_argmax'])} | "
              f"{', '.join(f'{k} {n}' for k, n in v['by_label'].items()) or '–'} |")
        a("")
    if ev:
        a(f"Everyday captures ({', '.join(ev['captures'])}; every flow benign"
          + (f"; never trained on — {', '.join(ev_tr)} was in the training data" if ev_tr else "") + "):")
        a("")
        a("| group | rows | alarmed | share | arg-max share | alarms as |")
        a("|---|---:|---:|---:|---:|---|")
        for g, v in ev["groups"].items():
            a(f"| `{g}` | {v['rows']:,} | {v['alarms']} | {_pct(v['fpr'])} | {_pct(v['fpr_argmax'])} | "
              f"{', '.join(f'{k} {n}' for k, n in v['by_label'].items()) or '–'} |")
        a("")
        gs = sorted({g for v in ev["per_variant"].values() for g in v},
                    key=lambda g: (0, int(g[2:])) if g.startswith("K=") else (1 if g == "host" else 2, 0))
        a("Per variant (alarmed / rows):")
        a("")
        a("| variant | " + " | ".join(f"`{g}`" for g in gs) + " |")
        a("|---|" + "---:|" * len(gs))
        for vname, per in ev["per_variant"].items():
            a(f"| `{vname}` | " + " | ".join(
                (f"{per[g]['alarms']} / {per[g]['rows']:,}" if g in per else "–") for g in gs) + " |")
        a("")
    else:
        a("Everyday captures (build/lab/lab-everyday-seed*.pcap): **not available when this card was made**.")
        a("")
    if pp:
        a(f"Public protocol captures (../shared/pcaps/public/protocols, MANIFEST themes not attacks; "
          f"{pp['exported']} of {pp['captures']} exported by this engine; no labels, every row counted benign), "
          "share of rows alarmed per source project:")
        a("")
        gs = list(pp["all"])
        a("| source | captures | " + " | ".join(f"`{g}`" for g in gs) + " |")
        a("|---|---:|" + "---:|" * len(gs))
        for src, per in list(pp["per_source"].items()) + [("**all**", dict(pp["all"], captures=pp["exported"]))]:
            a(f"| {src} | {per.get('captures', '')} | " + " | ".join(
                (f"{_pct(per[g]['fpr'])} ({per[g]['alarms']}/{per[g]['rows']:,})" if g in per else "–")
                for g in gs) + " |")
        a("")
        if pp.get("heldout_source"):
            a("Trained with public benign captures, each source evaluated by a model that never saw it "
              "(source folds; `PUBLIC_BENIGN_TRAIN=1`):")
            a("")
            a("| held-out source | " + " | ".join(f"`{g}`" for g in gs) + " |")
            a("|---|" + "---:|" * len(gs))
            for src, per in pp["heldout_source"].items():
                a(f"| {src} | " + " | ".join(
                    (f"{_pct(per[g]['fpr'])} ({per[g]['alarms']}/{per[g]['rows']:,})" if g in per else "–")
                    for g in gs) + " |")
            a("")
        if pp.get("top_captures"):
            a("Captures with the most alarms: " + "; ".join(
                f"`{os.path.basename(c['file'])}` {c['alarms']}/{c['rows']} "
                f"({', '.join(f'{k} {n}' for k, n in c['by_label'].items())})"
                for c in pp["top_captures"][:8]) + ".")
            a("")
    else:
        a("Public protocol captures: **not evaluated in this run** (PUBLIC_EVAL=0, or "
          "../shared/pcaps/public/MANIFEST.tsv not found).")
        a("")
    # ---- time to detect
    for td_key, td_title in (("time_to_detect", "Time to detect"),
                             ("time_to_detect_heldout", "Time to detect, other tools")):
        td = m.get(td_key)
        if td:
            _ttd_section(a, td, td_title)
    # ---- public attacks
    if "public_attacks" in m:
        a("## Real attack captures (../shared/pcaps/public/attacks, not in this repository)")
        a("")
        a("Each capture replayed with `tidewatchd replay --early-packets 8`; the attack flows are those "
          "the listed attacker initiated (or every flow). Majority end-verdict label (thresholds applied) vs "
          "the capture's family.")
        a("")
        a("| capture | family | attack flows | end verdicts | majority | match |")
        a("|---|---|---:|---|---|---|")
        n_ok = n = 0
        for r in m["public_attacks"]:
            if r.get("missing"):
                a(f"| `{r['file']}` | {r['family']} | – | missing | – | – |")
                continue
            n += 1
            n_ok += r["match"]
            labs = ", ".join(f"{k} {v}" for k, v in sorted(r["end_labels"].items(), key=lambda x: -x[1]))
            a(f"| `{r['file']}` ({r['what']}) | {r['family']} | {r['attack_flows']} | {labs} | "
              f"{r['majority']} | {'yes' if r['match'] else '**no**'} |")
        a("")
        a(f"Majority matches family on **{n_ok} of {n}** captures.")
        a("")
    # ---- where it fails
    a("## Where it fails")
    a("")
    fails = []
    for g, e in lt.items():
        for c in e["macro_f1_classes"]:
            f1 = e["per_class"][c]["f1"]
            if f1 < 0.85:
                cm = e["confusion_matrix"]["matrix"][labels.index(c)]
                worst = max((v, labels[j]) for j, v in enumerate(cm) if labels[j] != c)
                fails.append(f"Unseen lab seeds, `{g}`: `{c}` F1 {f1:.3f} (recall "
                             f"{e['per_class'][c]['recall']:.3f}, precision {e['per_class'][c]['precision']:.3f}; "
                             f"most often called `{worst[1]}`, {worst[0]:,} rows).")
    if m.get("holdout", {}).get("results"):
        for v, per in m["holdout"]["results"].items():
            if v.startswith("_"):
                continue
            for g, r in per.items():
                if r["recall_holdout_model"] < 0.85:
                    calls = max(r["holdout_model_calls_them"].items(), key=lambda x: x[1])
                    fails.append(f"Unseen tool `{v}` at `{g}`: recall {r['recall_holdout_model']:.3f} "
                                 f"(called `{calls[0]}` {calls[1]} of {r['rows']} times).")
    if ht:
        for g, e in ht["results"].items():
            for c in e["macro_f1_classes"]:
                f1 = e["per_class"][c]["f1"]
                if f1 < 0.85:
                    cm = e["confusion_matrix"]["matrix"][labels.index(c)]
                    worst = max((v, labels[j]) for j, v in enumerate(cm) if labels[j] != c)
                    fails.append(f"Other tools, `{g}`: `{c}` F1 {f1:.3f} (recall {e['per_class'][c]['recall']:.3f}, "
                                 f"precision {e['per_class'][c]['precision']:.3f}; most often called `{worst[1]}`, "
                                 f"{worst[0]:,} rows).")
        for k, d in (ht["per_tool"].get("end") or {}).items():
            lab = k.split("/", 1)[0]
            n = sum(d.values())
            if lab != "benign" and n >= 5 and d.get(lab, 0) / n < 0.5:
                fails.append(f"Other tools, `{k}` at `end`: recall {d.get(lab, 0) / n:.3f} of {n:,} rows ("
                             + ", ".join(f"{x} {c:,}" for x, c in sorted(d.items(), key=lambda x: -x[1])) + ").")
    for r in m.get("public_attacks") or []:
        if not r.get("missing") and not r["match"]:
            fails.append(f"Public `{r['file']}` ({r.get('what', '')}): {r['family']} called `{r['majority']}`.")
    if ev:
        for vname, per in ev["per_variant"].items():
            for g, v in per.items():
                if v["rows"] >= 20 and (v["fpr"] or 0) > 0.005:
                    fails.append(f"Everyday `{vname}` at `{g}`: {_pct(v['fpr'])} of rows alarmed "
                                 f"({', '.join(f'{k} {n}' for k, n in v['by_label'].items())}).")
    if pp:
        for src, per in pp["per_source"].items():
            for g, v in per.items():
                if isinstance(v, dict) and v.get("rows", 0) >= 20 and (v["fpr"] or 0) > 0.005:
                    fails.append(f"Public protocol captures of {src} at `{g}`: {_pct(v['fpr'])} alarmed "
                                 f"({', '.join(f'{k} {n}' for k, n in v['by_label'].items())}).")
    for c, r in ttd_h.items():
        if not r["met"]:
            fails.append(f"Time to detect, other tools, {c}: {r['within_target']} of {r['episodes']} episodes within "
                         f"{r['target']}, {r['never']} never detected.")
    for c, r in ttd.items():
        if not r["met"]:
            fails.append(f"Time to detect {c}: {r['within_target']} of {r['episodes']} episodes within "
                         f"{r['target']}, {r['never']} never detected.")
    if fails:
        for f in fails:
            a(f"- {f}")
    else:
        a("No measured check below its target.")
    a("")
    if thr_b:
        a("## Inference cost")
        a("")
        a("ONNX Runtime, 1 intra-op thread, rows per CPU-second of the inference thread (= per core):")
        a("")
        a("| batch | rows per CPU-second |")
        a("|---:|---:|")
        for b, v in thr_b.items():
            a(f"| {b} | {v['rows_per_cpu_s']:,.0f} |")
        a("")
    a("## Reproduce")
    a("")
    a("```sh")
    a(command)
    a("```")
    a("")
    a("Captures are made on demand (root; about 3 minutes per seed, 100–300 MB each, in build/lab/, "
      "git-ignored); timing in a live lab differs between runs even with the same seed, so a rerun gives "
      "close, not identical, figures. With the same feature CSVs, training is seeded and deterministic. "
      "Steps whose data is missing (everyday captures, ../shared/pcaps/public) are skipped with a message "
      "and their sections say so.")
    a("")
    a("## Blind spots")
    a("")
    a(blind_spots)
    a("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def _ttd_section(a, td, title):
    a(f"## {title}")
    a("")
    a(f"Each unseen test capture replayed with `tidewatchd replay --early-packets 8` (seeds "
      f"{' '.join(map(str, td['seeds']))}). An episode is one attack action of the lab's log (a C2 "
      "implant's beacons are one episode per host; an iodine tunnel and its forwarded queries are one). "
      "Time from the first packet of the episode's flows to the first verdict on one of them with the "
      f"episode's label (clock: {td['clock']}); flows before = the episode's flows started by then "
      "(attempts, queries, beacons); queries before counts a long tunnel flow's client packets.")
    a("")
    a("| class | episodes | never detected | seconds median | seconds max | seconds max by `ts` | "
      "flows before median | flows before max | queries before max | target | met |")
    a("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")

    def g3(v):
        if v is None:
            return "–"
        return f"{v:,.0f}" if isinstance(v, int) or v >= 100 else f"{v:.3g}"
    for c, r in td["per_class"].items():
        a(f"| {c} | {r['episodes']} | {r['never']} | {g3(r['seconds']['median'])} | {g3(r['seconds']['max'])} | "
          f"{g3((r.get('seconds_ts') or {}).get('max'))} | "
          f"{g3(r['flows_before']['median'])} | {g3(r['flows_before']['max'])} | {g3(r['queries_before']['max'])} | "
          f"{r['target']} | {'yes' if r['met'] else '**no**'} |")
    a("")
    slow = [e for e in td["episodes"] if e["flows"] and (not e["detected"] or e["label"] in TTD_LIMIT
            and e.get(TTD_LIMIT[e["label"]][0], 0) > TTD_LIMIT[e["label"]][1])]
    if slow:
        a("Episodes missing their target: " + "; ".join(
            f"seed {e['seed']} {e['label']}/{e['variant']} ({e['flows']} flows): " +
            ("never" if not e["detected"] else
             f"{e['seconds']:.2f} s, {e['flows_before']} flows, trigger {e['trigger']}") for e in slow[:20]) + ".")
        a("")


TTD_LIMIT = {"scan": ("seconds", 1.0), "dos": ("seconds", 1.0), "bruteforce": ("flows_before", 3),
             "exfil": ("queries_before", 10), "c2": ("flows_before", 5)}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Write a model card from train.py's outputs.")
    ap.add_argument("--metrics", required=True, help="metrics JSON written by train.py")
    ap.add_argument("--model", help="ONNX model (default: the path recorded in the metrics)")
    ap.add_argument("--name", help="model name (default: from the model's metadata); "
                    "the card goes to models/<name>/MODEL_CARD.md")
    ap.add_argument("--lab-metrics", metavar="JSON",
                    help="write the lab model's card from lab.py's metrics JSON (with --metrics = "
                         "train.py's metrics of that model, --out = the card) instead")
    ap.add_argument("--data", default=None,
                    help="one-paragraph description of the training and test data "
                         "(generator seeds, files)")
    ap.add_argument("--command", default=None,
                    help="exact command(s) that reproduce the model")
    ap.add_argument("--out", help="card path (default: <repo>/models/<name>/MODEL_CARD.md)")
    args = ap.parse_args(argv)

    with open(args.metrics, encoding="utf-8") as f:
        metrics = json.load(f)
    if args.lab_metrics:
        m = json.load(open(args.lab_metrics, encoding="utf-8"))
        c = m.get("card", {})
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.lab_metrics)), "MODEL_CARD.md")
        write_lab_card(out, m, metrics, note=c.get("note", ""), data_text=args.data or c.get("data_text", ""),
                       command=args.command or c.get("command", ""), blind_spots=c.get("blind_spots", ""))
        print(f"wrote {out}")
        return 0
    if args.data is None or args.command is None:
        ap.error("--data and --command are required (unless --lab-metrics)")
    model_path = args.model or metrics["model"]["path"]
    facts = onnx_facts(model_path)
    if facts["sha256"] != metrics["model"].get("sha256"):
        print(f"error: {model_path} is not the model these metrics describe (sha256 differs)",
              file=sys.stderr)
        return 2
    name = args.name or facts["meta"]["tidewatch.model_name"]
    out = args.out or os.path.join(REPO, "models", name, "MODEL_CARD.md")
    out_dir = os.path.dirname(os.path.abspath(out))
    model_rel = os.path.relpath(os.path.abspath(model_path), out_dir)
    text = build(metrics, facts, args.data, args.command, model_rel)
    os.makedirs(out_dir, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
