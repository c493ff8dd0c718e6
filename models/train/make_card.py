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
import hashlib
import json
import os
import sys
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRIGGER_TEXT = {
    "early": "features snapshotted after the first K packets of a flow",
    "end": "features at flow end",
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
        for i, t in enumerate(("early", "end")):
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
    for t in ("early", "end"):
        ev = metrics["test"][t]
        a("")
        a(f"### trigger = `{t}` ({ev['rows']:,} rows)")
        a("")
        if not ev["rows"]:
            a("No labelled test rows.")
            continue
        a(f"Macro-F1 **{fmt(ev['macro_f1'])}**, accuracy {fmt(ev['accuracy'])}, benign FPR "
          f"**{fmt(ev['benign_fpr'], pct=True)}** ({ev['benign_false_positives']} of "
          f"{ev['benign_rows']} benign rows).")
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


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Write a model card from train.py's outputs.")
    ap.add_argument("--metrics", required=True, help="metrics JSON written by train.py")
    ap.add_argument("--model", help="ONNX model (default: the path recorded in the metrics)")
    ap.add_argument("--name", help="model name (default: from the model's metadata); "
                    "the card goes to models/<name>/MODEL_CARD.md")
    ap.add_argument("--data", required=True,
                    help="one-paragraph description of the training and test data "
                         "(generator seeds, files)")
    ap.add_argument("--command", required=True,
                    help="exact command(s) that reproduce the model")
    ap.add_argument("--out", help="card path (default: <repo>/models/<name>/MODEL_CARD.md)")
    args = ap.parse_args(argv)

    with open(args.metrics, encoding="utf-8") as f:
        metrics = json.load(f)
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
