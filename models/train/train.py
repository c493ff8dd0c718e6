#!/usr/bin/env python3
"""Train Tidewatch's flow classifier and export it to ONNX.

Reads feature CSVs written by `tidewatchd features` (plus the `<csv>.schema.json`
next to each), trains one scikit-learn tree ensemble on both `early` and `end`
rows, exports it with skl2onnx, checks the ONNX model against scikit-learn with
ONNX Runtime, evaluates it on the test CSVs (separately per trigger), measures
ONNX Runtime throughput, and writes the model and a metrics JSON.

Typical use (from the repo root, with the venv from models/train/requirements.txt):

    .venv-train/bin/python models/train/train.py \
        --train data/train.csv --test data/test.csv \
        --out models/baseline/model.onnx --metrics-out models/baseline/metrics.json

Exit codes: 0 ok, 2 bad input (schema mismatch, bad CSV, missing class),
3 the ONNX model disagrees with scikit-learn.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

META_COLUMNS = [
    "flow_id", "trigger", "first_ts", "last_ts", "proto",
    "src_ip", "src_port", "dst_ip", "dst_port", "label",
]
LABELS = ["benign", "scan", "dos", "bruteforce", "exfil", "c2"]
TRIGGERS = ["early", "end"]
LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}

INPUT_NAME = "features"
OUTPUT_LABEL = "label"
OUTPUT_PROBA = "probabilities"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PROBA_TOL = 1e-4

LIMIT_TREES = 64
LIMIT_DEPTH = 14


class InputError(Exception):
    """Bad input data; reported as a clear message with exit code 2."""


# --------------------------------------------------------------------------- data

class Dataset:
    """Labelled rows of one or more CSV files (unlabelled rows are dropped)."""

    def __init__(self, X, y, trigger, groups, files, unlabeled):
        self.X = X            # float32 [N, F]
        self.y = y            # int64 [N], index into LABELS
        self.trigger = trigger  # '<U5' [N]
        self.groups = groups  # '<U...' [N], "<file#>:<flow_id>" for grouped splits
        self.files = files    # list of per-file summaries
        self.unlabeled = unlabeled

    def subset(self, mask):
        return Dataset(self.X[mask], self.y[mask], self.trigger[mask],
                       self.groups[mask], self.files, 0)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_schema(csv_path: str) -> dict:
    path = csv_path + ".schema.json"
    if not os.path.isfile(path):
        raise InputError(f"{csv_path}: schema file {path} not found "
                         "(tidewatchd features writes <csv>.schema.json next to the CSV)")
    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read schema JSON: {e}")
    if not isinstance(schema, dict):
        raise InputError(f"{path}: schema must be a JSON object")
    name, version, feats = schema.get("name"), schema.get("version"), schema.get("features")
    if not isinstance(name, str) or not name:
        raise InputError(f"{path}: 'name' must be a non-empty string")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"{path}: 'version' must be an integer")
    if (not isinstance(feats, list) or not feats
            or not all(isinstance(x, str) and x for x in feats)):
        raise InputError(f"{path}: 'features' must be a non-empty list of strings")
    if len(set(feats)) != len(feats):
        raise InputError(f"{path}: 'features' has duplicate names")
    bad = [x for x in feats if "," in x]
    if bad:
        raise InputError(f"{path}: feature names must not contain ',': {bad}")
    return {"name": name, "version": version, "features": list(feats), "path": path}


def describe_mismatch(expected: Sequence[str], got: Sequence[str]) -> str:
    missing = [x for x in expected if x not in got]
    extra = [x for x in got if x not in expected]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unexpected {extra}")
    if not parts:
        for i, (a, b) in enumerate(zip(expected, got)):
            if a != b:
                parts.append(f"order differs at feature #{i}: expected '{a}', got '{b}'")
                break
    return "; ".join(parts)


def read_csv(path: str, schema: dict, file_no: int):
    feats = schema["features"]
    n_feat = len(feats)
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot open: {e}")
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: empty file (no header row)")
        header = [h.strip() for h in header]
        if header[:len(META_COLUMNS)] != META_COLUMNS:
            raise InputError(f"{path}: the first {len(META_COLUMNS)} columns must be exactly "
                             f"{','.join(META_COLUMNS)}; got {','.join(header[:len(META_COLUMNS)])}")
        got = header[len(META_COLUMNS):]
        if got != feats:
            raise InputError(f"{path}: CSV feature columns do not match {schema['path']} "
                             f"({describe_mismatch(feats, got)})")
        width = len(header)
        rows_X: List[List[float]] = []
        rows_y: List[int] = []
        rows_t: List[str] = []
        rows_g: List[str] = []
        rows_line: List[int] = []
        unlabeled = 0
        counts = {t: {c: 0 for c in LABELS} for t in TRIGGERS}
        for line_no, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                raise InputError(f"{path}:{line_no}: expected {width} columns, got {len(row)}")
            trig = row[1].strip()
            if trig not in TRIGGERS:
                raise InputError(f"{path}:{line_no}: trigger must be one of {TRIGGERS}, got '{trig}'")
            label = row[9].strip()
            if label == "":
                unlabeled += 1
                continue
            if label not in LABEL_INDEX:
                raise InputError(f"{path}:{line_no}: unknown label '{label}' "
                                 f"(expected one of {','.join(LABELS)} or empty)")
            vals = row[len(META_COLUMNS):]
            try:
                xs = [float(v) for v in vals]
            except ValueError:
                bad = next(i for i, v in enumerate(vals) if not _is_float(v))
                raise InputError(f"{path}:{line_no}: feature '{feats[bad]}' is not a number: "
                                 f"'{vals[bad]}'")
            rows_X.append(xs)
            rows_y.append(LABEL_INDEX[label])
            rows_t.append(trig)
            rows_g.append(f"{file_no}:{row[0].strip()}")
            rows_line.append(line_no)
            counts[trig][label] += 1
    X = np.asarray(rows_X, dtype=np.float64).reshape(-1, n_feat)
    if X.size and not np.all(np.isfinite(X)):
        r, c = np.argwhere(~np.isfinite(X))[0]
        raise InputError(f"{path}:{rows_line[r]}: non-finite value ({X[r, c]}) in feature '{feats[c]}'; "
                         "the engine must emit finite features")
    big = np.abs(X) > np.finfo(np.float32).max
    if np.any(big):
        r, c = np.argwhere(big)[0]
        raise InputError(f"{path}:{rows_line[r]}: value {X[r, c]} in feature '{feats[c]}' "
                         "overflows float32")
    summary = {
        "path": path,
        "sha256": sha256_file(path),
        "schema_path": schema["path"],
        "labeled_rows": len(rows_y),
        "unlabeled_rows": unlabeled,
        "counts": counts,
    }
    return (X.astype(np.float32), np.asarray(rows_y, dtype=np.int64),
            np.asarray(rows_t, dtype="<U5"), np.asarray(rows_g, dtype=object), unlabeled, summary)


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def load_inputs(train_paths: Sequence[str], test_paths: Sequence[str]):
    """Load all CSVs; all must share one schema. Returns (schema, train, test)."""
    schemas = []
    for p in list(train_paths) + list(test_paths):
        schemas.append((p, load_schema(p)))
    ref_path, ref = schemas[0]
    for p, s in schemas[1:]:
        if (s["name"], s["version"]) != (ref["name"], ref["version"]):
            raise InputError(f"inputs use different schemas: {ref_path} is "
                             f"{ref['name']} v{ref['version']}, {p} is {s['name']} v{s['version']}")
        if s["features"] != ref["features"]:
            raise InputError(f"inputs use different feature lists under the same schema "
                             f"{ref['name']} v{ref['version']}: {ref_path} vs {p} "
                             f"({describe_mismatch(ref['features'], s['features'])})")
    schema = {"name": ref["name"], "version": ref["version"], "features": ref["features"]}

    def load(paths, offset):
        parts = [read_csv(p, dict(s, path=s["path"]), offset + i)
                 for i, (p, s) in enumerate(schemas[offset:offset + len(paths)])]
        X = np.concatenate([x[0] for x in parts])
        y = np.concatenate([x[1] for x in parts])
        t = np.concatenate([x[2] for x in parts])
        g = np.concatenate([x[3] for x in parts])
        return Dataset(X, y, t, g, [x[5] for x in parts], sum(x[4] for x in parts))

    return schema, load(train_paths, 0), load(test_paths, len(train_paths))


# --------------------------------------------------------------------------- model

def make_model(cfg: dict, seed: int, jobs: int):
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    cls = {"rf": RandomForestClassifier, "et": ExtraTreesClassifier}[cfg["estimator"]]
    cw = None if cfg["class_weight"] == "none" else cfg["class_weight"]
    return cls(
        n_estimators=cfg["n_estimators"],
        max_depth=cfg["max_depth"],
        min_samples_leaf=cfg["min_samples_leaf"],
        max_features="sqrt",
        class_weight=cw,
        bootstrap=(cfg["estimator"] == "rf"),  # each estimator's usual default
        random_state=seed,
        n_jobs=jobs,
    )


def snap_thresholds_to_float32(model) -> int:
    """Make split thresholds exactly representable in float32, same decisions.

    ONNX TreeEnsembleClassifier (ai.onnx.ml v3, float input) stores thresholds as
    float32, while scikit-learn keeps float64 thresholds and compares them with
    float32-cast inputs. For float32 inputs x, `x <= t` equals `x <= v` where v is
    the largest float32 not above t, so replacing t by v changes no scikit-learn
    decision and makes the exported model agree exactly. Returns nodes changed.
    """
    changed = 0
    for est in model.estimators_:
        thr = est.tree_.threshold
        leaf = est.tree_.children_left == -1
        v = thr.astype(np.float32)
        above = (v.astype(np.float64) > thr) & ~leaf
        v[above] = np.nextafter(v[above], np.float32(-np.inf))
        new = np.where(leaf, thr, v.astype(np.float64))
        changed += int(np.count_nonzero(new != thr))
        thr[:] = new
    return changed


def model_stats(model) -> dict:
    depths = [int(e.tree_.max_depth) for e in model.estimators_]
    nodes = [int(e.tree_.node_count) for e in model.estimators_]
    leaves = [int(e.tree_.n_leaves) for e in model.estimators_]
    return {
        "type": type(model).__name__,
        "n_trees": len(model.estimators_),
        "max_depth_limit": model.max_depth,
        "max_depth_actual": max(depths),
        "mean_depth": float(np.mean(depths)),
        "total_nodes": int(sum(nodes)),
        "total_leaves": int(sum(leaves)),
        "class_weight": model.class_weight,
        "min_samples_leaf": model.min_samples_leaf,
        "max_features": model.max_features,
        "bootstrap": bool(model.bootstrap),
    }


def export_onnx(model, schema: dict, name: str, version: str, description: str):
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    n_feat = len(schema["features"])
    onx = convert_sklearn(
        model,
        name=f"tidewatch_{name}",
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_feat]))],
        options={id(model): {"zipmap": False}},
        target_opset=dict(TARGET_OPSET),
    )
    # skl2onnx 1.20 lists the default domain twice in opset_import; keep one entry
    # per domain (highest version) so strict loaders don't trip over it.
    opsets: Dict[str, int] = {}
    for o in onx.opset_import:
        d = "" if o.domain in ("", "ai.onnx") else o.domain
        opsets[d] = max(opsets.get(d, 0), int(o.version))
    for d, v in opsets.items():
        if v > TARGET_OPSET.get(d, v):
            raise RuntimeError(f"skl2onnx used opset {v} for domain '{d}' above the target")
    del onx.opset_import[:]
    for d in sorted(opsets):
        onx.opset_import.append(onnx.helper.make_opsetid(d, opsets[d]))
    graph = onx.graph
    if [i.name for i in graph.input] != [INPUT_NAME]:
        raise RuntimeError(f"unexpected ONNX inputs {[i.name for i in graph.input]}")
    if len(graph.output) != 2:
        raise RuntimeError(f"expected 2 ONNX outputs, got {[o.name for o in graph.output]}")
    # skl2onnx's outputs are (label, probabilities) in that order; force the names.
    for out, want in zip(graph.output, [OUTPUT_LABEL, OUTPUT_PROBA]):
        if out.name != want:
            old = out.name
            for node in graph.node:
                node.output[:] = [want if o == old else o for o in node.output]
                node.input[:] = [want if i == old else i for i in node.input]
            out.name = want
    # Pin the declared output types/shapes: label int64 [N], probabilities float32 [N, 6].
    lab, prob = graph.output
    if lab.type.tensor_type.elem_type != onnx.TensorProto.INT64:
        raise RuntimeError("label output is not int64 (classes must be integer indices)")
    if prob.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise RuntimeError("probabilities output is not float32")
    lab.type.tensor_type.shape.CopyFrom(
        onnx.helper.make_tensor_type_proto(onnx.TensorProto.INT64, ["N"]).tensor_type.shape)
    prob.type.tensor_type.shape.CopyFrom(
        onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, ["N", len(LABELS)]).tensor_type.shape)
    inp = graph.input[0]
    inp.type.tensor_type.shape.dim[0].ClearField("dim_value")
    inp.type.tensor_type.shape.dim[0].dim_param = "N"

    del onx.metadata_props[:]
    onnx.helper.set_model_props(onx, {
        "tidewatch.schema": schema["name"],
        "tidewatch.schema_version": str(schema["version"]),
        "tidewatch.features": ",".join(schema["features"]),
        "tidewatch.labels": ",".join(LABELS),
        "tidewatch.model_name": name,
        "tidewatch.model_version": version,
    })
    onx.producer_name = "tidewatch-train"
    onx.producer_version = version
    onx.doc_string = description
    onnx.checker.check_model(onx, full_check=True)
    return onx


# --------------------------------------------------------------------------- eval

def evaluate(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    k = len(LABELS)
    idx = list(range(k))
    if len(y_true):
        p, r, f, s = precision_recall_fscore_support(
            y_true, y_pred, labels=idx, zero_division=0)
        cm = confusion_matrix(y_true, y_pred, labels=idx)
    else:
        p = r = f = np.zeros(k)
        s = np.zeros(k, dtype=int)
        cm = np.zeros((k, k), dtype=int)
    present = [i for i in idx if s[i] > 0]
    benign = y_true == LABEL_INDEX["benign"]
    n_benign = int(benign.sum())
    fp = int(np.sum(y_pred[benign] != LABEL_INDEX["benign"]))
    return {
        "rows": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else None,
        "per_class": {LABELS[i]: {"precision": float(p[i]), "recall": float(r[i]),
                                  "f1": float(f[i]), "support": int(s[i])} for i in idx},
        "macro_f1": float(np.mean(f[present])) if present else None,
        "macro_f1_classes": [LABELS[i] for i in present],
        "confusion_matrix": {"labels": list(LABELS), "rows": "truth", "columns": "prediction",
                             "matrix": cm.astype(int).tolist()},
        "benign_fpr": (fp / n_benign) if n_benign else None,
        "benign_rows": n_benign,
        "benign_false_positives": fp,
    }


def format_eval(title: str, m: dict) -> str:
    lines = [f"== {title}: {m['rows']} rows =="]
    if not m["rows"]:
        lines.append("  (no labelled rows)")
        return "\n".join(lines)
    lines.append(f"  {'class':<11}{'precision':>10}{'recall':>9}{'f1':>9}{'support':>9}")
    for c in LABELS:
        pc = m["per_class"][c]
        lines.append(f"  {c:<11}{pc['precision']:>10.4f}{pc['recall']:>9.4f}"
                     f"{pc['f1']:>9.4f}{pc['support']:>9d}")
    lines.append(f"  macro-F1 {m['macro_f1']:.4f} (over {len(m['macro_f1_classes'])} classes "
                 f"with support)   accuracy {m['accuracy']:.4f}")
    fpr = "n/a" if m["benign_fpr"] is None else f"{m['benign_fpr']:.4%}"
    lines.append(f"  benign FPR {fpr} ({m['benign_false_positives']}/{m['benign_rows']} benign "
                 "rows predicted as an attack)")
    w = max(11, max(len(c) for c in LABELS) + 2)
    lines.append("  confusion matrix (rows = truth, columns = prediction):")
    lines.append("  " + " " * w + "".join(f"{c:>{w}}" for c in LABELS))
    for c, row in zip(LABELS, m["confusion_matrix"]["matrix"]):
        lines.append("  " + f"{c:<{w}}" + "".join(f"{v:>{w}d}" for v in row))
    return "\n".join(lines)


def eval_by_trigger(y: np.ndarray, pred: np.ndarray, trigger: np.ndarray) -> dict:
    out = {t: evaluate(y[trigger == t], pred[trigger == t]) for t in TRIGGERS}
    out["all"] = evaluate(y, pred)
    return out


# --------------------------------------------------------------------------- onnx runtime

def ort_session(model_bytes: bytes, threads: int = 1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])


def verify_onnx(sess, model, X: np.ndarray) -> dict:
    outs = sess.get_outputs()
    io = {
        "inputs": [{"name": i.name, "type": i.type, "shape": [str(d) for d in i.shape]}
                   for i in sess.get_inputs()],
        "outputs": [{"name": o.name, "type": o.type, "shape": [str(d) for d in o.shape]}
                    for o in outs],
    }
    names = [o.name for o in outs]
    if names != [OUTPUT_LABEL, OUTPUT_PROBA]:
        raise RuntimeError(f"ONNX outputs are {names}, expected {[OUTPUT_LABEL, OUTPUT_PROBA]}")
    if outs[0].type != "tensor(int64)" or outs[1].type != "tensor(float)":
        raise RuntimeError(f"ONNX output types are {outs[0].type}, {outs[1].type}")
    label, proba = sess.run(None, {INPUT_NAME: X})
    sk_label = model.predict(X)
    sk_proba = model.predict_proba(X)
    if label.shape != (len(X),) or proba.shape != (len(X), len(LABELS)):
        raise RuntimeError(f"ONNX output shapes {label.shape}, {proba.shape} for {len(X)} rows")
    agree = int(np.sum(label == sk_label))
    diff = float(np.max(np.abs(proba.astype(np.float64) - sk_proba))) if len(X) else 0.0
    # Predictions that differ only because of an exact probability tie are not errors.
    mism = np.nonzero(label != sk_label)[0]
    ties = int(sum(1 for i in mism if np.isclose(sk_proba[i, label[i]], sk_proba[i, sk_label[i]],
                                                  rtol=0, atol=PROBA_TOL)))
    return {
        "onnxruntime_version": __import__("onnxruntime").__version__,
        "rows": int(len(X)),
        "label_agreement": agree,
        "label_agreement_rate": agree / len(X) if len(X) else 1.0,
        "label_mismatches_on_ties": ties,
        "max_abs_proba_diff": diff,
        "proba_tolerance": PROBA_TOL,
        "io": io,
        "ok": (agree + ties == len(X)) and diff <= PROBA_TOL,
    }


def measure_throughput(sess, X: np.ndarray, batch_sizes=(1, 256, 1024),
                       seconds: float = 1.0) -> dict:
    n = len(X)
    reps = int(np.ceil(max(batch_sizes) * 4 / max(n, 1)))
    pool = np.ascontiguousarray(np.tile(X, (max(reps, 1), 1)))
    results = {}
    for bs in batch_sizes:
        nb = max(1, min(64, len(pool) // bs))
        batches = [np.ascontiguousarray(pool[i * bs:(i + 1) * bs]) for i in range(nb)]
        feed = [{INPUT_NAME: b} for b in batches]
        for fd in feed[:3]:  # warm-up
            sess.run(None, fd)
        calls = 0
        t0 = time.perf_counter()
        while True:
            sess.run(None, feed[calls % nb])
            calls += 1
            el = time.perf_counter() - t0
            if el >= seconds and calls >= 3:
                break
        results[str(bs)] = {
            "batch_size": bs,
            "calls": calls,
            "seconds": el,
            "rows_per_s": calls * bs / el,
            "us_per_call": el / calls * 1e6,
        }
    return results


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


# --------------------------------------------------------------------------- sweep

def group_split(ds: Dataset, frac: float, seed: int):
    """Hold out ~frac of flows per class (all rows of one flow stay together)."""
    rng = np.random.default_rng(seed)
    val_groups = set()
    for c in range(len(LABELS)):
        gs = sorted(set(ds.groups[ds.y == c].tolist()))
        if len(gs) < 2:
            continue
        rng.shuffle(gs)
        val_groups.update(gs[:max(1, int(round(len(gs) * frac)))])
    mask = np.fromiter((g in val_groups for g in ds.groups), dtype=bool, count=len(ds.groups))
    return ds.subset(~mask), ds.subset(mask)


def sweep(train: Dataset, test: Dataset, args) -> tuple:
    grid = []
    for est in ("rf", "et"):
        for depth in (10, LIMIT_DEPTH):
            # Without bootstrap (et) balanced_subsample is the same as balanced.
            for cw in (("balanced", "balanced_subsample") if est == "rf" else ("balanced",)):
                grid.append({"estimator": est, "n_estimators": args.n_estimators,
                             "max_depth": depth, "class_weight": cw,
                             "min_samples_leaf": args.min_samples_leaf})
    if args.sweep_on == "val":
        fit_ds, val_ds = group_split(train, args.val_fraction, args.seed)
        missing = [LABELS[c] for c in range(len(LABELS)) if not np.any(fit_ds.y == c)]
        if missing:
            raise InputError(f"--sweep: the training part of the split has no rows of {missing}")
    else:
        fit_ds, val_ds = train, test
    print(f"sweep: fit on {len(fit_ds.y)} rows, score on {len(val_ds.y)} rows "
          f"({'held-out flows of train' if args.sweep_on == 'val' else 'TEST split'})")
    rows = []
    for cfg in grid:
        m = make_model(cfg, args.seed, args.jobs).fit(fit_ds.X, fit_ds.y)
        pred = m.predict(val_ds.X)
        ev = eval_by_trigger(val_ds.y, pred, val_ds.trigger)
        st = model_stats(m)
        row = dict(cfg, macro_f1=ev["all"]["macro_f1"],
                   macro_f1_early=ev["early"]["macro_f1"], macro_f1_end=ev["end"]["macro_f1"],
                   benign_fpr=ev["all"]["benign_fpr"], total_nodes=st["total_nodes"])
        rows.append(row)
        print(f"  {cfg['estimator']} depth={cfg['max_depth']:<3} cw={cfg['class_weight']:<19}"
              f" macroF1 all={_f(row['macro_f1'])} early={_f(row['macro_f1_early'])}"
              f" end={_f(row['macro_f1_end'])} benignFPR={_f(row['benign_fpr'])}"
              f" nodes={row['total_nodes']}")
    # Score = macro-F1 - benign FPR (a false alarm on benign traffic costs as much
    # as a point of macro-F1), rounded so noise-level differences don't matter;
    # ties go to the smaller model.
    for r in rows:
        r["score"] = (r["macro_f1"] or 0.0) - (r["benign_fpr"] or 0.0)
    best = min(rows, key=lambda r: (-round(r["score"], 3), r["total_nodes"]))
    chosen = {k: best[k] for k in ("estimator", "n_estimators", "max_depth",
                                   "class_weight", "min_samples_leaf")}
    print(f"sweep: chose {chosen} (score = macro-F1 - benign FPR = {best['score']:.4f})")
    return chosen, {"scored_on": args.sweep_on, "criterion": "macro_f1 - benign_fpr", "fit_rows": int(len(fit_ds.y)),
                    "score_rows": int(len(val_ds.y)), "results": rows, "chosen": chosen}


def _f(v):
    return "  n/a " if v is None else f"{v:.4f}"


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="Train the Tidewatch flow classifier and export it to ONNX.")
    ap.add_argument("--train", action="extend", nargs="+", required=True, metavar="CSV",
                    help="training CSV(s) from `tidewatchd features` (repeatable)")
    ap.add_argument("--test", action="extend", nargs="+", required=True, metavar="CSV",
                    help="test CSV(s) from `tidewatchd features` (repeatable)")
    ap.add_argument("--out", required=True, help="ONNX model to write")
    ap.add_argument("--metrics-out", required=True, help="metrics JSON to write")
    ap.add_argument("--name", default="baseline", help="model name (default: baseline)")
    ap.add_argument("--version", default="1.0.0", help="model version (default: 1.0.0)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    ap.add_argument("--estimator", choices=["rf", "et"], default="rf",
                    help="rf = RandomForestClassifier, et = ExtraTreesClassifier (default: rf)")
    ap.add_argument("--n-estimators", type=int, default=64, help=f"trees, <= {LIMIT_TREES}")
    ap.add_argument("--max-depth", type=int, default=14, help=f"tree depth, <= {LIMIT_DEPTH}")
    ap.add_argument("--min-samples-leaf", type=int, default=1)
    ap.add_argument("--class-weight", choices=["balanced", "balanced_subsample", "none"],
                    default="balanced_subsample")
    ap.add_argument("--sweep", action="store_true",
                    help="try rf (balanced, balanced_subsample) and et (balanced) at depth 10 "
                         "and 14 first, then "
                         "train the best configuration by macro-F1 minus benign FPR "
                         "(--n-estimators and --min-samples-leaf apply to all)")
    ap.add_argument("--sweep-on", choices=["val", "test"], default="val",
                    help="score the sweep on held-out train flows (val, default) or on the "
                         "test CSVs (test: makes the reported test metrics optimistic)")
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--jobs", type=int, default=1, help="training threads (default 1)")
    ap.add_argument("--bench-seconds", type=float, default=1.0,
                    help="seconds per batch size for the throughput measurement (0 = skip)")
    args = ap.parse_args(argv)
    if not 1 <= args.n_estimators <= LIMIT_TREES:
        ap.error(f"--n-estimators must be in 1..{LIMIT_TREES}")
    if not 1 <= args.max_depth <= LIMIT_DEPTH:
        ap.error(f"--max-depth must be in 1..{LIMIT_DEPTH}")
    if not 0 < args.val_fraction < 1:
        ap.error("--val-fraction must be in (0, 1)")
    return args


def run(args) -> int:
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn

    schema, train, test = load_inputs(args.train, args.test)
    n_feat = len(schema["features"])
    print(f"schema {schema['name']} v{schema['version']}, {n_feat} features")
    for split, ds in (("train", train), ("test", test)):
        per = {t: [int(np.sum((ds.y == c) & (ds.trigger == t))) for c in range(len(LABELS))]
               for t in TRIGGERS}
        print(f"{split}: {len(ds.y)} labelled rows ({ds.unlabeled} unlabelled skipped) from "
              f"{len(ds.files)} file(s)")
        for t in TRIGGERS:
            print(f"  {t:<5} " + "  ".join(f"{c}={n}" for c, n in zip(LABELS, per[t])))

    missing = [LABELS[c] for c in range(len(LABELS)) if not np.any(train.y == c)]
    if missing:
        raise InputError(f"training data has no labelled rows of class(es) {missing}; "
                         "a model that cannot output every class is wrong — regenerate the data")
    if len(test.y) == 0:
        raise InputError("test data has no labelled rows")
    absent = [LABELS[c] for c in range(len(LABELS)) if not np.any(test.y == c)]
    if absent:
        print(f"warning: test data has no rows of {absent}; their recall is undefined "
              "(reported as 0, left out of macro-F1)", file=sys.stderr)

    sweep_info = None
    if args.sweep:
        cfg, sweep_info = sweep(train, test, args)
    else:
        cfg = {"estimator": args.estimator, "n_estimators": args.n_estimators,
               "max_depth": args.max_depth, "class_weight": args.class_weight,
               "min_samples_leaf": args.min_samples_leaf}

    t0 = time.perf_counter()
    model = make_model(cfg, args.seed, args.jobs).fit(train.X, train.y)
    train_s = time.perf_counter() - t0
    if list(model.classes_) != list(range(len(LABELS))):
        raise RuntimeError(f"unexpected classes {model.classes_}")
    snapped = snap_thresholds_to_float32(model)
    stats = model_stats(model)
    print(f"trained {stats['type']}: {stats['n_trees']} trees, depth <= "
          f"{stats['max_depth_actual']}, {stats['total_nodes']} nodes in {train_s:.1f}s "
          f"({snapped} thresholds snapped to float32)")

    description = (f"Tidewatch flow classifier '{args.name}' {args.version}: "
                   f"{stats['type']} ({stats['n_trees']} trees, max depth {stats['max_depth_actual']}) "
                   f"over {schema['name']} v{schema['version']} features ({n_feat}) -> "
                   f"{'/'.join(LABELS)}")
    onx = export_onnx(model, schema, args.name, args.version, description)
    model_bytes = onx.SerializeToString()

    sess = ort_session(model_bytes, threads=1)
    verify = verify_onnx(sess, model, test.X)
    print(f"onnxruntime {verify['onnxruntime_version']} check: labels agree on "
          f"{verify['label_agreement']}/{verify['rows']} test rows, max |dp| = "
          f"{verify['max_abs_proba_diff']:.2e}")
    if not verify["ok"]:
        print("error: the ONNX model does not reproduce the scikit-learn model", file=sys.stderr)
        return 3

    # Evaluate the exported model's own predictions (what the engine will run).
    onnx_label, _ = sess.run(None, {INPUT_NAME: test.X})
    evals = eval_by_trigger(test.y, onnx_label.astype(np.int64), test.trigger)
    train_pred = model.predict(train.X)
    train_eval = eval_by_trigger(train.y, train_pred, train.trigger)
    print()
    for t in TRIGGERS:
        print(format_eval(f"test, trigger={t}", evals[t]))
        print()
    print(f"train macro-F1 (resubstitution): early={_f(train_eval['early']['macro_f1'])} "
          f"end={_f(train_eval['end']['macro_f1'])}")

    bench = {}
    if args.bench_seconds > 0:
        bench = measure_throughput(sess, test.X, seconds=args.bench_seconds)
        print("onnxruntime throughput, 1 intra-op thread: " + ", ".join(
            f"batch {b['batch_size']}: {b['rows_per_s']:,.0f} rows/s" for b in bench.values()))

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model_bytes)
    os.replace(tmp, args.out)
    # Re-load from disk: the file is what ships.
    onnx.checker.check_model(args.out, full_check=True)
    disk_sess = ort_session(open(args.out, "rb").read())
    if not np.array_equal(disk_sess.run(None, {INPUT_NAME: test.X})[0], onnx_label):
        raise RuntimeError("model re-read from disk predicts differently")

    metrics = {
        "tidewatch_metrics_version": 1,
        "model": {
            "name": args.name,
            "version": args.version,
            "path": args.out,
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "file_bytes": len(model_bytes),
            "description": description,
            "config": cfg,
            "seed": args.seed,
            "thresholds_snapped_to_float32": snapped,
            **stats,
            "onnx": {
                "ir_version": int(onx.ir_version),
                "opset_import": {(o.domain or "ai.onnx"): int(o.version) for o in onx.opset_import},
                "input": {"name": INPUT_NAME, "type": "float32", "shape": ["N", n_feat]},
                "outputs": [{"name": OUTPUT_LABEL, "type": "int64", "shape": ["N"]},
                            {"name": OUTPUT_PROBA, "type": "float32",
                             "shape": ["N", len(LABELS)]}],
                "metadata_props": {p.key: p.value for p in onx.metadata_props},
            },
        },
        "schema": schema,
        "labels": list(LABELS),
        "data": {
            "train": {"files": train.files, "labeled_rows": int(len(train.y)),
                      "unlabeled_rows": train.unlabeled},
            "test": {"files": test.files, "labeled_rows": int(len(test.y)),
                     "unlabeled_rows": test.unlabeled},
        },
        "training_seconds": train_s,
        "sweep": sweep_info,
        "onnx_check": verify,
        "test": evals,
        "train_resubstitution_macro_f1": {t: train_eval[t]["macro_f1"] for t in TRIGGERS},
        "throughput": {"threads": 1, "batches": bench, "machine": machine_info()},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]) if sys.argv else "",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.metrics_out)), exist_ok=True)
    with open(args.metrics_out, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2, sort_keys=False)
        f.write("\n")
    print(f"wrote {args.out} ({len(model_bytes):,} bytes) and {args.metrics_out}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
