#!/usr/bin/env python3
"""Train Tidewatch's flow classifier and export it to ONNX.

Reads feature CSVs written by `tidewatchd features` (plus the `<csv>.schema.json`
next to each), trains one scikit-learn model on both `early` and `end` rows --
a tree ensemble (rf/et, exported with skl2onnx) or an MLP (mlp: sign(x)*log1p(|x|),
StandardScaler, MLPClassifier; exported as a plain ONNX graph that takes the raw
features) -- checks the ONNX model against scikit-learn with ONNX Runtime,
evaluates it on the test CSVs (separately per trigger), measures ONNX Runtime
throughput, and writes the model and a metrics JSON. The model's metadata carries the
alert thresholds (optional) and the per-feature median of the benign training rows
(`tidewatch.benign_medians`, for the engine's alert explanations).

Typical use (from the repo root, with the venv from models/train/requirements.txt):

    .venv-train/bin/python models/train/train.py \
        --train data/train.csv --test data/test.csv \
        --out models/baseline/model.onnx --metrics-out models/baseline/metrics.json

Exit codes: 0 ok, 2 bad input (schema mismatch, bad CSV, missing class),
3 the ONNX model disagrees with scikit-learn.
"""

from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import json
import os
import platform
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from tidewatch_tools.labels import LABELS  # noqa: E402

META_COLUMNS = [
    "flow_id", "trigger", "first_ts", "last_ts", "proto",
    "src_ip", "src_port", "dst_ip", "dst_port", "label",
]
# Row triggers of `tidewatchd features`: `early` (after a flow's first K packets), `end`
# (flow end) and `host` (schema v4: a flow's first packet, classified at once because its
# source or destination crossed a host-context bound -- scans, floods).
TRIGGERS = ["early", "end", "host"]
LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}

INPUT_NAME = "features"
OUTPUT_LABEL = "label"
OUTPUT_PROBA = "probabilities"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
PROBA_TOL = 1e-4
# MLP: scikit-learn and ONNX Runtime both compute in float32 (the scaler folded
# into the first layer, different summation orders and exp/log kernels); observed
# differences are ~2e-6, so the forest's tolerance holds with a wide margin.
MLP_PROBA_TOL = 1e-4

LIMIT_TREES = 64
LIMIT_DEPTH = 14


class InputError(Exception):
    """Bad input data; reported as a clear message with exit code 2."""


# --------------------------------------------------------------------------- data

class Dataset:
    """Labelled rows of one or more CSV files (unlabelled rows are dropped)."""

    def __init__(self, X, y, trigger, groups, files, unlabeled, tgroup=None, capture=None):
        self.X = X            # float32 [N, F]
        self.y = y            # int64 [N], index into LABELS
        self.trigger = trigger  # '<U5' [N]
        self.groups = groups  # '<U...' [N], "<file#>:<flow_id>" for grouped splits
        self.files = files    # list of per-file summaries
        self.unlabeled = unlabeled
        # Trigger group ("end", "host", "early K=8", or "early" when K is unknown) and
        # capture of each row (see row_origin).
        self.tgroup = trigger.astype(object) if tgroup is None else tgroup
        self.capture = np.zeros(len(y), dtype=object) if capture is None else capture

    def subset(self, mask):
        return Dataset(self.X[mask], self.y[mask], self.trigger[mask],
                       self.groups[mask], self.files, 0, self.tgroup[mask], self.capture[mask])


def row_origin(flow_id: str, trigger: str, file_no: int):
    """(capture, trigger group) of a row.

    models/train/lab.py writes flow ids `<capture>~k<K>~<engine flow id>` into the CSVs it
    prepares (K = the --early-packets of the export, 0 for exports without early rows), so
    one CSV can hold several captures and every K; a plain `tidewatchd features` CSV is one
    capture and its early rows have no known K.
    """
    parts = flow_id.split("~")
    if len(parts) == 3 and parts[1][:1] == "k" and parts[1][1:].isdigit():
        cap, k = parts[0], int(parts[1][1:])
    else:
        cap, k = f"file{file_no}", 0
    if trigger == "early":
        return cap, (f"early K={k}" if k > 0 else "early")
    return cap, trigger


def group_order(names) -> List[str]:
    """Trigger groups in report order: early K ascending, plain early, host, end."""
    def key(g):
        if g.startswith("early K="):
            return (0, int(g[8:]))
        return ({"early": 1, "host": 2, "end": 3}.get(g, 4), 0)
    return sorted(set(names), key=key)


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
        rows_tg: List[str] = []
        rows_cap: List[str] = []
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
            cap, tg = row_origin(row[0].strip(), trig, file_no)
            rows_cap.append(cap)
            rows_tg.append(tg)
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
            np.asarray(rows_t, dtype="<U5"), np.asarray(rows_g, dtype=object), unlabeled, summary,
            np.asarray(rows_tg, dtype=object), np.asarray(rows_cap, dtype=object))


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
        tg = np.concatenate([x[6] for x in parts])
        cap = np.concatenate([x[7] for x in parts])
        return Dataset(X, y, t, g, [x[5] for x in parts], sum(x[4] for x in parts), tg, cap)

    return schema, load(train_paths, 0), load(test_paths, len(train_paths))


# --------------------------------------------------------------------------- model

FOREST_ESTIMATORS = ("rf", "et")
ESTIMATORS = FOREST_ESTIMATORS + ("mlp",)
# MLP configurations tried by --sweep (hidden layer sizes); the slower ones can be
# ruled out with --min-rows-per-s.
SWEEP_MLP_HIDDEN = ((32,), (64, 32), (128, 64))
LIMIT_MLP_UNITS = 512   # per hidden layer
LIMIT_MLP_LAYERS = 4
MLP_N_ITER_NO_CHANGE = 20
MLP_VALIDATION_FRACTION = 0.1
TRANSFORMED_NAME = "signed_log_features"


def is_mlp(cfg: dict) -> bool:
    return cfg["estimator"] == "mlp"


def signed_log1p(X: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|), in float32 exactly as the ONNX graph computes it.

    ONNX has no Log1p operator, so the exported graph computes Log(Add(Abs(x), 1));
    scikit-learn computes the same float32 expression here (not np.log1p) so the
    two agree. For |x| below ~1e-7 (float32 epsilon) 1 + |x| rounds to 1 and the
    value maps to 0; such magnitudes carry no signal in any feature of the schema.
    """
    X = np.asarray(X, dtype=np.float32)
    return np.sign(X) * np.log(np.abs(X) + np.float32(1.0))


def make_model(cfg: dict, seed: int, jobs: int):
    if is_mlp(cfg):
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler
        mlp = MLPClassifier(
            hidden_layer_sizes=tuple(cfg["hidden_layer_sizes"]),
            activation="relu",
            solver="adam",
            alpha=cfg["alpha"],
            max_iter=cfg["max_iter"],
            early_stopping=True,
            validation_fraction=MLP_VALIDATION_FRACTION,
            n_iter_no_change=MLP_N_ITER_NO_CHANGE,
            random_state=seed,
        )
        return Pipeline([
            ("signed_log1p", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
            ("mlp", mlp),
        ])
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


def capture_weights(ds, spec, class_power: float = 1.0) -> Optional[np.ndarray]:
    """Per-row weight multipliers from --capture-weight KIND=W (KIND = capture name without its
    trailing digits, as in capture_split: lab, synth, pub, everyday, ...) and
    --capture-class-power P (P < 1: within each class, a capture with n rows of it weighs
    n**P instead of n, the class total unchanged, so a few long attacks in one capture do
    not dominate their class); None without either."""
    if not spec and class_power == 1.0:
        return None
    import re
    w = np.ones(len(ds.y), dtype=np.float64)
    if spec:
        kinds = np.asarray([re.sub(r"\d+$", "", str(c)) for c in ds.capture.tolist()], dtype=object)
        for kind, mult in spec.items():
            w[kinds == kind] *= mult
    if class_power != 1.0:
        caps = np.asarray(ds.capture.tolist(), dtype=object)
        for c in np.unique(ds.y):
            m = ds.y == c
            names, inv, counts = np.unique(caps[m], return_inverse=True, return_counts=True)
            f = counts.astype(np.float64) ** (class_power - 1.0)
            f *= m.sum() / float(np.sum(f * counts))   # class total unchanged
            w[m] *= f[inv]
    return w


def fit_model(cfg: dict, X: np.ndarray, y: np.ndarray, seed: int, jobs: int,
              weights: Optional[np.ndarray] = None):
    """Build and fit the model of `cfg`.

    MLPClassifier has no class_weight; with class_weight=balanced the MLP gets
    per-row sample weights n / (k * n_class) (scikit-learn >= 1.7 supports
    sample_weight for MLPs; its early-stopping score is then weighted too).
    """
    model = make_model(cfg, seed, jobs)
    if is_mlp(cfg):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.utils.class_weight import compute_sample_weight
        params = {}
        if cfg["class_weight"] == "balanced":
            params["mlp__sample_weight"] = compute_sample_weight("balanced", y)
        if weights is not None:
            # --capture-weight: multiply (balanced weights are computed over all rows first).
            params["mlp__sample_weight"] = params.get("mlp__sample_weight", np.ones(len(y))) * weights
        with warnings.catch_warnings():
            # Hitting max_iter is recorded in the metrics ("converged"), not warned about.
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(X, y, **params)
    if weights is not None:
        raise InputError("--capture-weight is only supported with --estimator mlp")
    return model.fit(X, y)


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
    if hasattr(model, "named_steps"):
        return mlp_stats(model)
    depths = [int(e.tree_.max_depth) for e in model.estimators_]
    nodes = [int(e.tree_.node_count) for e in model.estimators_]
    leaves = [int(e.tree_.n_leaves) for e in model.estimators_]
    return {
        "type": type(model).__name__,
        "family": "forest",
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


def mlp_stats(pipe) -> dict:
    mlp = pipe.named_steps["mlp"]
    layers = [int(mlp.coefs_[0].shape[0])] + [int(w.shape[1]) for w in mlp.coefs_]
    n_params = int(sum(w.size for w in mlp.coefs_) + sum(b.size for b in mlp.intercepts_))
    return {
        "type": type(mlp).__name__,
        "family": "mlp",
        "input_transform": "sign(x)*log(1+|x|) in float32, then StandardScaler (both inside the ONNX graph)",
        "layers": layers,
        "hidden_layer_sizes": list(layers[1:-1]),
        "activation": mlp.activation,
        "output_activation": "softmax",
        "n_parameters": n_params,
        "multiply_adds_per_row": int(sum(w.size for w in mlp.coefs_)),
        "solver": mlp.solver,
        "alpha": mlp.alpha,
        "learning_rate_init": mlp.learning_rate_init,
        "batch_size": mlp.batch_size,
        "max_iter": mlp.max_iter,
        "n_iter": int(mlp.n_iter_),
        "converged": bool(mlp.n_iter_ < mlp.max_iter),
        "early_stopping": bool(mlp.early_stopping),
        "validation_fraction": mlp.validation_fraction,
        "n_iter_no_change": mlp.n_iter_no_change,
        "best_validation_score": (None if mlp.best_validation_score_ is None
                                  else float(mlp.best_validation_score_)),
        "dtype": str(mlp.coefs_[0].dtype),
    }


def model_size(stats: dict) -> int:
    """Size used to break sweep ties within a family (nodes or parameters)."""
    return stats["n_parameters"] if stats["family"] == "mlp" else stats["total_nodes"]


def convert_mlp_pipeline(pipe, n_feat: int, name: str):
    """ONNX graph of signed_log1p -> StandardScaler -> MLPClassifier on RAW features.

    Built directly with onnx.helper from the fitted weights (skl2onnx's converter
    gives a Scaler op, MatMul/Add pairs and a label lookup that together run ~1.6x
    slower in ONNX Runtime on one thread). Standard ai.onnx operators only:

        features -> Abs -> Add(1) -> Log -> l;  t = Where(features < 0, -l, l)
                    (= sign(x) * log(1 + |x|); Sign is ~2x slower than Less/Neg/Where)
        t -> Gemm(W1', b1') -> Relu -> ... -> Gemm(Wk, bk) = logits
        probabilities = Softmax(logits, axis=1); label = ArgMax(logits, axis=1)

    The StandardScaler is folded into the first layer, computed in float64 then
    stored as float32: W1' = W1 / scale (per input row), b1' = b1 - (mean / scale) @ W1.
    The label is the column index, which is the class because classes_ == 0..k-1.
    """
    from onnx import TensorProto, helper, numpy_helper

    names = [n for n, _ in pipe.steps]
    if names != ["signed_log1p", "scale", "mlp"]:
        raise RuntimeError(f"unexpected MLP pipeline steps {names}")
    scaler, mlp = pipe.named_steps["scale"], pipe.named_steps["mlp"]
    if list(mlp.classes_) != list(range(len(LABELS))):
        raise RuntimeError(f"unexpected classes {mlp.classes_}")
    if mlp.out_activation_ != "softmax" or mlp.activation != "relu":
        raise RuntimeError(f"unsupported MLP activations {mlp.activation}/{mlp.out_activation_}")
    if mlp.coefs_[0].shape[0] != n_feat:
        raise RuntimeError(f"MLP expects {mlp.coefs_[0].shape[0]} inputs, schema has {n_feat}")
    mean = np.zeros(n_feat) if scaler.mean_ is None else scaler.mean_.astype(np.float64)
    scale = np.ones(n_feat) if scaler.scale_ is None else scaler.scale_.astype(np.float64)
    Ws = [w.astype(np.float64) for w in mlp.coefs_]
    bs = [b.astype(np.float64) for b in mlp.intercepts_]
    bs[0] = bs[0] - (mean / scale) @ Ws[0]
    Ws[0] = Ws[0] / scale[:, None]

    inits = [helper.make_tensor("tw_one", TensorProto.FLOAT, [], [1.0]),
             helper.make_tensor("tw_zero", TensorProto.FLOAT, [], [0.0])]
    nodes = [
        helper.make_node("Abs", [INPUT_NAME], ["tw_abs"], name="abs"),
        helper.make_node("Add", ["tw_abs", "tw_one"], ["tw_abs_1p"], name="abs_plus_1"),
        helper.make_node("Log", ["tw_abs_1p"], ["tw_log1p_abs"], name="log1p_abs"),
        helper.make_node("Less", [INPUT_NAME, "tw_zero"], ["tw_negative"], name="is_negative"),
        helper.make_node("Neg", ["tw_log1p_abs"], ["tw_neg_log1p_abs"], name="neg_log1p_abs"),
        helper.make_node("Where", ["tw_negative", "tw_neg_log1p_abs", "tw_log1p_abs"],
                         [TRANSFORMED_NAME], name="signed_log1p"),
    ]
    h = TRANSFORMED_NAME
    for i, (w, b) in enumerate(zip(Ws, bs)):
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"W{i + 1}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"b{i + 1}"))
        last = i == len(Ws) - 1
        z = "logits" if last else f"z{i + 1}"
        nodes.append(helper.make_node("Gemm", [h, f"W{i + 1}", f"b{i + 1}"], [z], name=f"dense{i + 1}"))
        if not last:
            h = f"h{i + 1}"
            nodes.append(helper.make_node("Relu", [z], [h], name=f"relu{i + 1}"))
    nodes.append(helper.make_node("ArgMax", ["logits"], [OUTPUT_LABEL], name="argmax",
                                  axis=1, keepdims=0))
    nodes.append(helper.make_node("Softmax", ["logits"], [OUTPUT_PROBA], name="softmax", axis=1))
    graph = helper.make_graph(
        nodes, f"tidewatch_{name}",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, n_feat])],
        [helper.make_tensor_value_info(OUTPUT_LABEL, TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info(OUTPUT_PROBA, TensorProto.FLOAT, ["N", len(LABELS)])],
        inits)
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET[""])])
    onx.ir_version = 8  # what skl2onnx writes for the forest; opset 17 needs IR >= 8
    return onx


def export_onnx(model, schema: dict, name: str, version: str, description: str,
                thresholds: Optional[Dict[str, float]] = None,
                medians: Optional[Sequence[float]] = None):
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    n_feat = len(schema["features"])
    if hasattr(model, "named_steps"):
        onx = convert_mlp_pipeline(model, n_feat, name)
    else:
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
        **({} if thresholds is None else {THRESHOLDS_KEY: thresholds_json(thresholds)}),
        **({} if medians is None else {BENIGN_MEDIANS_KEY: medians_json(medians)}),
    })
    onx.producer_name = "tidewatch-train"
    onx.producer_version = version
    onx.doc_string = description
    onnx.checker.check_model(onx, full_check=True)
    return onx


# --------------------------------------------------------------------------- benign medians

BENIGN_MEDIANS_KEY = "tidewatch.benign_medians"
MEDIAN_DIGITS = 6   # significant digits written


def benign_medians(X: np.ndarray, y: np.ndarray) -> List[float]:
    """Per-feature median of the benign rows (every trigger), in feature order, rounded to
    MEDIAN_DIGITS significant digits: the `typical` value the engine's alert explanations
    (occlusion, engine/src/explain.rs) set one feature at a time to."""
    Xb = np.asarray(X, dtype=np.float64)[np.asarray(y) == LABEL_INDEX["benign"]]
    if len(Xb) == 0:
        raise InputError("no benign rows: cannot compute the benign medians")
    med = [float(f"{v:.{MEDIAN_DIGITS}g}") for v in np.median(Xb, axis=0)]
    if not all(np.isfinite(med)):
        raise InputError("a benign median is not finite")
    return med


def medians_json(med: Sequence[float]) -> str:
    """[0.0, 2.0, 1234.57, ...]: one number per feature."""
    return json.dumps([float(v) for v in med])


# --------------------------------------------------------------------------- thresholds

THRESHOLDS_KEY = "tidewatch.thresholds"
# Benign false-alarm share allowed on the validation captures, in every trigger group
# (the target on unseen data is 0.5 %; the margin absorbs validation-to-test drift).
DEFAULT_MAX_FPR = 0.0025
# A label whose benign false alarms need a higher threshold than this is left at it and
# reported: a threshold of ~1 would switch the label off.
DEFAULT_MAX_THRESHOLD = 0.999


def thresholds_json(thr: Dict[str, float]) -> str:
    """{"scan": 0.93, ...} with each value the shortest decimal that round-trips to float32."""
    return "{" + ", ".join(f'"{k}": {np.format_float_positional(np.float32(v), unique=True, trim="0")}'
                           for k, v in thr.items()) + "}"


def parse_thresholds(text: Optional[str]) -> Optional[Dict[str, float]]:
    if not text:
        return None
    d = json.loads(text)
    return {str(k): float(v) for k, v in d.items()}


def thresholds_vector(thr: Optional[Dict[str, float]], labels: Sequence[str] = LABELS) -> np.ndarray:
    """float32 [L]: the threshold of each label column (0 = plain argmax; benign never has one)."""
    v = np.zeros(len(labels), dtype=np.float32)
    for i, c in enumerate(labels):
        if thr and c in thr and c != "benign":
            v[i] = np.float32(thr[c])
    return v


def apply_thresholds(proba: np.ndarray, thr: Optional[Dict[str, float]],
                     labels: Sequence[str] = LABELS) -> np.ndarray:
    """What the engine reports: the argmax label, or benign when its probability is below
    that label's threshold (ties of the argmax go to the lower index, as ONNX ArgMax)."""
    proba = np.asarray(proba, dtype=np.float32)
    if len(proba) == 0:
        return np.zeros(0, dtype=np.int64)
    pred = np.argmax(proba, axis=1).astype(np.int64)
    if thr:
        tv = thresholds_vector(thr, labels)
        top = proba[np.arange(len(pred)), pred]
        pred = np.where(top < tv[pred], labels.index("benign") if "benign" in labels else 0, pred)
    return pred


def choose_thresholds(proba: np.ndarray, y: np.ndarray, tgroup: np.ndarray,
                      max_fpr: float = DEFAULT_MAX_FPR,
                      max_threshold: float = DEFAULT_MAX_THRESHOLD,
                      min_allowed: int = 0) -> tuple:
    """Per non-benign label, the smallest thresholds that keep the benign false-alarm
    share <= max_fpr in every trigger group of the validation rows.

    Start from plain argmax (every threshold 0). While some group has more benign rows
    alarmed than floor(max_fpr * its benign rows), raise one label's threshold just above
    its lowest-scored false alarm in a violating group, choosing the label whose step costs
    the smallest share of its own validation detections (ties: the lower new threshold).
    Each step removes at least one false alarm, so this ends; a label that would need a
    threshold above max_threshold is not raised further and the group is reported unmet.
    Returns (thresholds {label: float}, report dict).
    """
    proba = np.asarray(proba, dtype=np.float32)
    B = LABEL_INDEX["benign"]
    pred0 = np.argmax(proba, axis=1)
    top = proba[np.arange(len(pred0)), pred0]
    benign = y == B
    groups = group_order(tgroup.tolist())
    n_benign = {g: int(np.sum(benign & (tgroup == g))) for g in groups}
    # min_allowed (--min-allowed-alarms): a small group (a few hundred host rows) may keep that
    # many false alarms, so one benign row does not set a label's threshold for every trigger.
    allowed = {g: max(int(np.floor(max_fpr * n_benign[g] + 1e-9)), min_allowed) for g in groups}
    n_pos = {c: int(np.sum((y == c) & (pred0 == c))) for c in range(len(LABELS))}
    n_true = {c: int(np.sum(y == c)) for c in range(len(LABELS))}
    t = np.zeros(len(LABELS), dtype=np.float32)
    stuck = set()
    steps = 0

    def alarms(mask):
        return mask & benign & (pred0 != B) & (top >= t[pred0])

    while True:
        viol = [g for g in groups if n_benign[g] and
                int(np.sum(alarms(tgroup == g))) > allowed[g]]
        if not viol:
            break
        vmask = np.isin(tgroup, viol)
        fa = alarms(vmask)
        best = None
        for c in range(len(LABELS)):
            if c == B or c in stuck:
                continue
            sc = top[fa & (pred0 == c)]
            if not len(sc):
                continue
            new = np.nextafter(np.float32(sc.min()), np.float32(np.inf))
            if new > max_threshold:
                stuck.add(c)
                continue
            lost = int(np.sum((y == c) & (pred0 == c) & (top >= t[c]) & (top < new)))
            cost = lost / max(n_pos[c], 1)
            if best is None or (cost, float(new)) < (best[0], best[1]):
                best = (cost, float(new), c)
        if best is None:
            break     # only stuck labels are left: report
        t[best[2]] = np.float32(best[1])
        steps += 1
    thr = {LABELS[c]: float(t[c]) for c in range(len(LABELS)) if c != B}
    pred = apply_thresholds(proba, thr)
    per_group = {}
    for g in groups:
        m = tgroup == g
        fa0 = int(np.sum(m & benign & (pred0 != B)))
        fa1 = int(np.sum(m & benign & (pred != B)))
        per_group[g] = {"benign_rows": n_benign[g], "allowed_false_alarms": allowed[g],
                        "false_alarms_argmax": fa0, "false_alarms_thresholded": fa1,
                        "fpr_argmax": fa0 / n_benign[g] if n_benign[g] else None,
                        "fpr_thresholded": fa1 / n_benign[g] if n_benign[g] else None,
                        "met": fa1 <= allowed[g]}
    recall = {}
    for c in range(len(LABELS)):
        if c == B or not n_true[c]:
            continue
        recall[LABELS[c]] = {"rows": n_true[c],
                             "recall_argmax": float(np.mean(pred0[y == c] == c)),
                             "recall_thresholded": float(np.mean(pred[y == c] == c))}
    report = {"max_fpr": max_fpr, "min_allowed": min_allowed, "max_threshold": max_threshold, "steps": steps,
              "stuck_labels": sorted(LABELS[c] for c in stuck),
              "met": all(v["met"] for v in per_group.values()),
              "groups": per_group, "recall": recall, "rows": int(len(y))}
    return thr, report


def format_thresholds(thr: Dict[str, float], report: Optional[dict] = None) -> str:
    lines = ["thresholds (" + THRESHOLDS_KEY + "): " + thresholds_json(thr)]
    if report:
        lines.append(f"  chosen on {report['rows']} validation rows for benign false alarms <= "
                     f"{report['max_fpr']:.2%} per trigger group"
                     + ("" if report["met"] else "  ** NOT MET in every group **"))
        for g, v in report["groups"].items():
            fa = "n/a" if v["fpr_thresholded"] is None else f"{v['fpr_thresholded']:.3%}"
            f0 = "n/a" if v["fpr_argmax"] is None else f"{v['fpr_argmax']:.3%}"
            lines.append(f"  {g:<12} benign rows {v['benign_rows']:>7}  false alarms argmax "
                         f"{v['false_alarms_argmax']:>5} ({f0})  thresholded {v['false_alarms_thresholded']:>5} "
                         f"({fa})  allowed {v['allowed_false_alarms']}")
        for c, v in report["recall"].items():
            lines.append(f"  recall {c:<11} argmax {v['recall_argmax']:.4f}  thresholded "
                         f"{v['recall_thresholded']:.4f}  ({v['rows']} rows)")
    return "\n".join(lines)


def describe_captures(caps: Sequence[str], show: int = 6) -> str:
    """'lab3 synth101 pub: 139 captures' -- kinds with many captures are counted, not listed."""
    import re
    kinds = collections.defaultdict(list)
    for c in caps:
        kinds[re.sub(r"\d+$", "", c)].append(c)
    return " ".join(" ".join(v) if len(v) <= show else f"{k}: {len(v)} captures"
                    for k, v in sorted(kinds.items()))


def capture_split(ds: Dataset, frac: float, seed: int, skip_kinds=()):
    """Validation captures: ~frac of the captures of each kind (the capture name without
    its digits: lab, synth, pub-..., file), at least one per kind that has two or more,
    chosen with a seeded shuffle. Whole captures, so validation rows come from traffic
    the fitted model never saw. Returns (fit mask, validation mask, validation captures)."""
    import re
    caps = sorted(set(ds.capture.tolist()))
    kinds = collections.defaultdict(list)
    for c in caps:
        kinds[re.sub(r"\d+$", "", c)].append(c)
    rng = np.random.default_rng(seed)
    val = []
    for k in sorted(kinds):
        cs = sorted(kinds[k])
        if len(cs) < 2 or k in skip_kinds:
            continue
        rng.shuffle(cs)
        val += cs[:max(1, int(round(len(cs) * frac)))]
    vmask = np.isin(ds.capture, val)
    return ~vmask, vmask, sorted(val)


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


def eval_by_trigger(y: np.ndarray, pred: np.ndarray, trigger: np.ndarray,
                    tgroup: Optional[np.ndarray] = None) -> dict:
    """Metrics per trigger (early, end, host), per trigger group (early K=k) when K is
    known and differs from the plain trigger, and over all rows."""
    out = {t: evaluate(y[trigger == t], pred[trigger == t]) for t in TRIGGERS}
    if tgroup is not None:
        for g in group_order(tgroup.tolist()):
            if g not in out:
                out[g] = evaluate(y[tgroup == g], pred[tgroup == g])
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


def verify_onnx(sess, model, X: np.ndarray, tol: float = PROBA_TOL) -> dict:
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
                                                  rtol=0, atol=tol)))
    return {
        "onnxruntime_version": __import__("onnxruntime").__version__,
        "rows": int(len(X)),
        "label_agreement": agree,
        "label_agreement_rate": agree / len(X) if len(X) else 1.0,
        "label_mismatches_on_ties": ties,
        "max_abs_proba_diff": diff,
        "proba_tolerance": tol,
        "io": io,
        "ok": (agree + ties == len(X)) and diff <= tol,
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
        c0 = time.thread_time()
        while True:
            sess.run(None, feed[calls % nb])
            calls += 1
            el = time.perf_counter() - t0
            if el >= seconds and calls >= 3:
                break
        cpu = max(time.thread_time() - c0, 1e-9)
        results[str(bs)] = {
            "batch_size": bs,
            "calls": calls,
            "seconds": el,
            "rows_per_s": calls * bs / el,
            "us_per_call": el / calls * 1e6,
            # With 1 intra-op thread ONNX Runtime runs in the calling thread, so this is
            # rows per second of one core, whatever else the machine is doing.
            "cpu_seconds": cpu,
            "rows_per_cpu_s": calls * bs / cpu,
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


def mlp_cfg(hidden, args) -> dict:
    return {"estimator": "mlp", "hidden_layer_sizes": [int(h) for h in hidden],
            "alpha": args.alpha, "class_weight": args.mlp_class_weight,
            "max_iter": args.max_iter}


def forest_cfg(est: str, depth: int, cw: str, args) -> dict:
    return {"estimator": est, "n_estimators": args.n_estimators, "max_depth": depth,
            "class_weight": cw, "min_samples_leaf": args.min_samples_leaf}


def describe_cfg(cfg: dict) -> str:
    if is_mlp(cfg):
        hid = "x".join(str(h) for h in cfg["hidden_layer_sizes"])
        return f"mlp hidden={hid:<7} alpha={cfg['alpha']:g} cw={cfg['class_weight']:<8}"
    return f"{cfg['estimator']}  depth={cfg['max_depth']:<3} cw={cfg['class_weight']:<19}"


def peak_rows_per_s(model, schema: dict, X: np.ndarray, seconds: float, rounds: int = 3) -> float:
    """ONNX Runtime rows per CPU-second at batch 256, 1 intra-op thread, best of
    `rounds` runs. CPU time of the calling thread (which does all the work with one
    intra-op thread) rather than wall time, so a busy machine does not make a model
    look slower; the best run is the least disturbed by cache/SMT contention."""
    onx = export_onnx(model, schema, "sweep", "0", "sweep candidate")
    sess = ort_session(onx.SerializeToString(), threads=1)
    return max(measure_throughput(sess, X, batch_sizes=(256,), seconds=seconds)["256"]["rows_per_cpu_s"]
               for _ in range(rounds))


def sweep(train: Dataset, test: Dataset, schema: dict, args) -> tuple:
    grid = []
    for est in FOREST_ESTIMATORS:
        for depth in (10, LIMIT_DEPTH):
            # Without bootstrap (et) balanced_subsample is the same as balanced.
            for cw in (("balanced", "balanced_subsample") if est == "rf" else ("balanced",)):
                grid.append(forest_cfg(est, depth, cw, args))
    for hidden in SWEEP_MLP_HIDDEN:
        grid.append(mlp_cfg(hidden, args))
    if args.sweep_on == "val":
        fit_ds, val_ds = group_split(train, args.val_fraction, args.seed)
        missing = [LABELS[c] for c in range(len(LABELS)) if not np.any(fit_ds.y == c)]
        if missing:
            raise InputError(f"--sweep: the training part of the split has no rows of {missing}")
    else:
        fit_ds, val_ds = train, test
    print(f"sweep: fit on {len(fit_ds.y)} rows, score on {len(val_ds.y)} rows "
          f"({'held-out flows of train' if args.sweep_on == 'val' else 'TEST split'})")
    bench_s = args.sweep_bench_seconds
    if args.min_rows_per_s > 0:
        print(f"sweep: only configurations with >= {args.min_rows_per_s:,.0f} rows/s "
              "(ONNX Runtime, batch 256, 1 thread, per CPU-second, best of 3) are eligible")
    rows = []
    for cfg in grid:
        m = fit_model(cfg, fit_ds.X, fit_ds.y, args.seed, args.jobs)
        pred = m.predict(val_ds.X)
        ev = eval_by_trigger(val_ds.y, pred, val_ds.trigger)
        st = model_stats(m)
        rps = peak_rows_per_s(m, schema, val_ds.X, bench_s) if bench_s > 0 else None
        row = dict(cfg, family=st["family"], macro_f1=ev["all"]["macro_f1"],
                   macro_f1_early=ev["early"]["macro_f1"], macro_f1_end=ev["end"]["macro_f1"],
                   benign_fpr=ev["all"]["benign_fpr"], size=model_size(st),
                   rows_per_cpu_s_batch256=rps)
        if st["family"] == "forest":
            row["total_nodes"] = st["total_nodes"]
        else:
            row["n_parameters"] = st["n_parameters"]
            row["n_iter"] = st["n_iter"]
        row["eligible"] = args.min_rows_per_s <= 0 or (rps is not None and rps >= args.min_rows_per_s)
        rows.append((cfg, row))
        size = (f"nodes={row['total_nodes']}" if st["family"] == "forest"
                else f"params={row['n_parameters']} iters={row['n_iter']}")
        speed = "" if rps is None else f" rows/s@256={rps:,.0f}"
        print(f"  {describe_cfg(cfg)} macroF1 all={_f(row['macro_f1'])}"
              f" early={_f(row['macro_f1_early'])} end={_f(row['macro_f1_end'])}"
              f" benignFPR={_f(row['benign_fpr'])} {size}{speed}"
              f"{'' if row['eligible'] else '  (too slow: excluded)'}", flush=True)
    # Score = macro-F1 - benign FPR (a false alarm on benign traffic costs as much
    # as a point of macro-F1), rounded so noise-level differences don't matter;
    # ties go to the earlier family in the grid (forests, the default, then MLPs),
    # then to the smaller model. Throughput only filters (--min-rows-per-s), so the
    # choice stays deterministic when no minimum is set.
    family_rank = {"forest": 0, "mlp": 1}
    for _, r in rows:
        r["score"] = (r["macro_f1"] or 0.0) - (r["benign_fpr"] or 0.0)
    eligible = [(c, r) for c, r in rows if r["eligible"]]
    if not eligible:
        best_speed = max((r["rows_per_cpu_s_batch256"] or 0.0) for _, r in rows)
        raise InputError(f"--min-rows-per-s {args.min_rows_per_s:,.0f}: no configuration is fast "
                         f"enough (fastest measured: {best_speed:,.0f} rows/s at batch 256)")
    chosen, best = min(eligible, key=lambda cr: (-round(cr[1]["score"], 3),
                                                 family_rank[cr[1]["family"]], cr[1]["size"]))
    chosen = dict(chosen)
    print(f"sweep: chose {chosen} (score = macro-F1 - benign FPR = {best['score']:.4f})")
    return chosen, {"scored_on": args.sweep_on, "criterion": "macro_f1 - benign_fpr",
                    "min_rows_per_s": args.min_rows_per_s,
                    "throughput_measure": ("ONNX Runtime rows per CPU-second at batch 256, 1 intra-op "
                                           f"thread, best of 3 runs of {bench_s:g} s") if bench_s > 0 else None,
                    "fit_rows": int(len(fit_ds.y)), "score_rows": int(len(val_ds.y)),
                    "results": [r for _, r in rows], "chosen": chosen}


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
    ap.add_argument("--estimator", choices=list(ESTIMATORS), default="rf",
                    help="rf = RandomForestClassifier, et = ExtraTreesClassifier, mlp = "
                         "MLPClassifier on sign(x)*log1p(|x|) + StandardScaler (default: rf)")
    ap.add_argument("--n-estimators", type=int, default=64, help=f"trees, <= {LIMIT_TREES}")
    ap.add_argument("--max-depth", type=int, default=14, help=f"tree depth, <= {LIMIT_DEPTH}")
    ap.add_argument("--min-samples-leaf", type=int, default=1)
    ap.add_argument("--class-weight", choices=["balanced", "balanced_subsample", "none"],
                    default=None,
                    help="forests: default balanced_subsample; mlp: balanced (= per-row sample "
                         "weights n/(k*n_class); the default) or none")
    ap.add_argument("--hidden", default="64,32", metavar="H[,H...]",
                    help="mlp hidden layer sizes, comma-separated (default: 64,32)")
    ap.add_argument("--alpha", type=float, default=1e-4,
                    help="mlp L2 penalty (default: 1e-4; also used by the sweep's MLPs)")
    ap.add_argument("--max-iter", type=int, default=300,
                    help="mlp epochs at most; early stopping on 10%% of the rows usually ends "
                         "sooner (default: 300; also used by the sweep's MLPs)")
    ap.add_argument("--sweep", action="store_true",
                    help="try rf (balanced, balanced_subsample) and et (balanced) at depth 10 "
                         "and 14 and MLPs with hidden layers "
                         + ", ".join("x".join(map(str, h)) for h in SWEEP_MLP_HIDDEN)
                         + " (balanced) first, then train the best configuration by macro-F1 "
                         "minus benign FPR (--n-estimators and --min-samples-leaf apply to the "
                         "forests, --alpha and --max-iter to the MLPs)")
    ap.add_argument("--min-rows-per-s", type=float, default=0.0, metavar="X",
                    help="--sweep: exclude configurations whose ONNX Runtime throughput at "
                         "batch 256 with 1 intra-op thread is below X rows/s, measured per "
                         "CPU-second of the inference thread (so other load on the machine "
                         "does not count), best of 3 short runs (default: 0 = no constraint)")
    ap.add_argument("--sweep-bench-seconds", type=float, default=0.3,
                    help="--sweep: seconds per throughput run (3 runs per configuration; "
                         "0 = do not measure, only allowed without --min-rows-per-s)")
    ap.add_argument("--sweep-on", choices=["val", "test"], default="val",
                    help="score the sweep on held-out train flows (val, default) or on the "
                         "test CSVs (test: makes the reported test metrics optimistic)")
    ap.add_argument("--val-fraction", type=float, default=0.2,
                    help="share of flows (sweep) or of captures per kind (--thresholds validation) "
                         "held out for validation (default 0.2)")
    ap.add_argument("--thresholds", choices=["none", "validation"], default="none",
                    help="validation: hold out whole training captures (--val-fraction of each "
                         "kind: lab seeds, synthetic seeds, ...), fit on the rest, and choose per "
                         "non-benign label the smallest alert threshold keeping the benign "
                         "false-alarm share <= --max-fpr in every trigger group (end, host, each "
                         "early K) of the validation captures; written to the ONNX metadata "
                         f"'{THRESHOLDS_KEY}' and applied to every reported metric (plain argmax "
                         "metrics are reported too). none (default): no thresholds, as before")
    ap.add_argument("--max-fpr", type=float, default=DEFAULT_MAX_FPR,
                    help=f"--thresholds validation: benign false-alarm share allowed per trigger "
                         f"group (default {DEFAULT_MAX_FPR})")
    ap.add_argument("--min-allowed-alarms", type=int, default=0, metavar="N",
                    help="--thresholds validation: every trigger group may keep at least N benign "
                         "false alarms (default 0: only floor(--max-fpr x its benign rows); with ~300 "
                         "validation host rows that is 0, so a single benign row sets a label's "
                         "threshold for every trigger)")
    ap.add_argument("--max-threshold", type=float, default=DEFAULT_MAX_THRESHOLD,
                    help=f"--thresholds validation: never raise a threshold above this "
                         f"(default {DEFAULT_MAX_THRESHOLD}); a label that would need more is reported")
    ap.add_argument("--final-fit", choices=["rest", "all"], default="rest",
                    help="--thresholds validation: ship the model fitted without the validation "
                         "captures, the one the thresholds were chosen for (rest, default), or refit "
                         "on all training rows and keep those thresholds (all: more data, thresholds "
                         "only approximately calibrated for it)")
    ap.add_argument("--capture-weight", action="append", default=[], metavar="KIND=W",
                    help="mlp: multiply the sample weight of the rows of captures of this kind "
                         "(capture name without trailing digits: lab, synth, pub, everyday, ...) "
                         "by W (repeatable; default: none)")
    ap.add_argument("--capture-class-power", type=float, default=1.0, metavar="P",
                    help="mlp: within each class, weigh a training capture's n rows of it as "
                         "n**P in total instead of n (class totals unchanged; 0.5 = square root, "
                         "so a few long attacks in one capture do not dominate their class; "
                         "default 1 = off)")
    ap.add_argument("--no-validation-kind", action="append", default=[], metavar="KIND",
                    help="--thresholds validation: never hold out captures of this kind (e.g. pub: "
                         "public benign captures are all fitted on and do not move the thresholds)")
    ap.add_argument("--jobs", type=int, default=1, help="training threads (default 1)")
    ap.add_argument("--bench-seconds", type=float, default=1.0,
                    help="seconds per batch size for the throughput measurement (0 = skip)")
    args = ap.parse_args(argv)
    if not 1 <= args.n_estimators <= LIMIT_TREES:
        ap.error(f"--n-estimators must be in 1..{LIMIT_TREES}")
    if not 1 <= args.max_depth <= LIMIT_DEPTH:
        ap.error(f"--max-depth must be in 1..{LIMIT_DEPTH}")
    cw = {}
    for spec in args.capture_weight:
        kind, _, w = spec.partition("=")
        try:
            cw[kind] = float(w)
        except ValueError:
            ap.error(f"--capture-weight wants KIND=W, got '{spec}'")
        if not kind or cw[kind] <= 0:
            ap.error(f"--capture-weight wants KIND=W with W > 0, got '{spec}'")
    args.capture_weight = cw
    if not 0 < args.val_fraction < 1:
        ap.error("--val-fraction must be in (0, 1)")
    try:
        hidden = [int(h) for h in args.hidden.split(",")]
    except ValueError:
        ap.error(f"--hidden must be comma-separated integers, got '{args.hidden}'")
    if not 1 <= len(hidden) <= LIMIT_MLP_LAYERS or not all(1 <= h <= LIMIT_MLP_UNITS for h in hidden):
        ap.error(f"--hidden: 1..{LIMIT_MLP_LAYERS} layers of 1..{LIMIT_MLP_UNITS} units")
    args.hidden = hidden
    if args.alpha < 0:
        ap.error("--alpha must be >= 0")
    if args.max_iter < 1:
        ap.error("--max-iter must be >= 1")
    if args.class_weight == "balanced_subsample" and args.estimator == "mlp":
        ap.error("--class-weight balanced_subsample is for forests; use balanced or none with mlp")
    # The MLPs of a sweep use balanced weights unless weighting is switched off.
    args.mlp_class_weight = "none" if args.class_weight == "none" else "balanced"
    if args.class_weight is None:
        args.class_weight = "balanced" if args.estimator == "mlp" else "balanced_subsample"
    if args.min_rows_per_s < 0:
        ap.error("--min-rows-per-s must be >= 0")
    if args.min_rows_per_s > 0 and not args.sweep:
        ap.error("--min-rows-per-s applies to --sweep")
    if args.sweep_bench_seconds < 0 or (args.min_rows_per_s > 0 and args.sweep_bench_seconds == 0):
        ap.error("--sweep-bench-seconds must be > 0 with --min-rows-per-s (>= 0 otherwise)")
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
        cfg, sweep_info = sweep(train, test, schema, args)
    elif args.estimator == "mlp":
        cfg = mlp_cfg(args.hidden, args)
        cfg["class_weight"] = args.class_weight
    else:
        cfg = forest_cfg(args.estimator, args.max_depth, args.class_weight, args)

    thr, thr_info = None, None
    t0 = time.perf_counter()
    if args.thresholds == "validation":
        fit_m, val_m, val_caps = capture_split(train, args.val_fraction, args.seed, set(args.no_validation_kind))
        if not val_caps:
            raise InputError("--thresholds validation needs at least two training captures of one "
                             "kind (captures are named by models/train/lab.py flow ids, else one per CSV)")
        fit_ds, val_ds = train.subset(fit_m), train.subset(val_m)
        missing = [LABELS[c] for c in range(len(LABELS)) if not np.any(fit_ds.y == c)]
        if missing:
            raise InputError(f"--thresholds validation: without the validation captures {val_caps} "
                             f"the training rows have no {missing}")
        print(f"thresholds: validation captures {describe_captures(val_caps)} ({len(val_ds.y)} rows); "
              f"fitting on the other {len(fit_ds.y)} rows")
        vmodel = fit_model(cfg, fit_ds.X, fit_ds.y, args.seed, args.jobs,
                           capture_weights(fit_ds, args.capture_weight, args.capture_class_power))
        if not is_mlp(cfg):
            snap_thresholds_to_float32(vmodel)
        vsess = ort_session(export_onnx(vmodel, schema, args.name, args.version, "validation")
                            .SerializeToString(), threads=1)
        vproba = vsess.run(None, {INPUT_NAME: val_ds.X})[1]
        thr, thr_report = choose_thresholds(vproba, val_ds.y, val_ds.tgroup,
                                            args.max_fpr, args.max_threshold,
                                            args.min_allowed_alarms)
        print(format_thresholds(thr, thr_report))
        if not thr_report["met"]:
            print(f"warning: thresholds cannot hold the benign false-alarm share <= {args.max_fpr:.2%} "
                  f"in every validation group (labels at --max-threshold: {thr_report['stuck_labels']})",
                  file=sys.stderr)
        thr_info = {"validation_captures": val_caps, "fit_rows": int(len(fit_ds.y)),
                    "validation_rows": int(len(val_ds.y)), "final_fit": args.final_fit,
                    **thr_report}
        if args.final_fit == "rest":
            model = vmodel
        else:
            model = fit_model(cfg, train.X, train.y, args.seed, args.jobs,
                              capture_weights(train, args.capture_weight, args.capture_class_power))
    else:
        model = fit_model(cfg, train.X, train.y, args.seed, args.jobs,
                          capture_weights(train, args.capture_weight, args.capture_class_power))
    train_s = time.perf_counter() - t0
    if list(model.classes_) != list(range(len(LABELS))):
        raise RuntimeError(f"unexpected classes {model.classes_}")
    if is_mlp(cfg):
        snapped = None
        stats = model_stats(model)
        tol = MLP_PROBA_TOL
        print(f"trained {stats['type']}: layers {'-'.join(map(str, stats['layers']))}, "
              f"{stats['n_parameters']:,} parameters, {stats['n_iter']} epochs "
              f"({'early-stopped' if stats['converged'] else 'hit --max-iter'}) in {train_s:.1f}s")
        shape = (f"{stats['type']} (layers {'-'.join(map(str, stats['layers']))}, "
                 f"{stats['activation']}, {stats['n_parameters']} parameters; input "
                 "sign(x)*log1p(|x|) + standard scaling in the graph)")
    else:
        snapped = snap_thresholds_to_float32(model)   # 0 when already snapped (validation fit)
        stats = model_stats(model)
        tol = PROBA_TOL
        print(f"trained {stats['type']}: {stats['n_trees']} trees, depth <= "
              f"{stats['max_depth_actual']}, {stats['total_nodes']} nodes in {train_s:.1f}s "
              f"({snapped} thresholds snapped to float32)")
        shape = f"{stats['type']} ({stats['n_trees']} trees, max depth {stats['max_depth_actual']})"

    description = (f"Tidewatch flow classifier '{args.name}' {args.version}: {shape} "
                   f"over {schema['name']} v{schema['version']} features ({n_feat}) -> "
                   f"{'/'.join(LABELS)}")
    if thr is not None:
        description += "; alert thresholds " + thresholds_json(thr)
    medians = benign_medians(train.X, train.y)
    print(f"benign medians ({BENIGN_MEDIANS_KEY}) of {int(np.sum(train.y == LABEL_INDEX['benign']))} "
          "benign training rows")
    onx = export_onnx(model, schema, args.name, args.version, description, thr, medians)
    model_bytes = onx.SerializeToString()

    sess = ort_session(model_bytes, threads=1)
    verify = verify_onnx(sess, model, test.X, tol)
    print(f"onnxruntime {verify['onnxruntime_version']} check: labels agree on "
          f"{verify['label_agreement']}/{verify['rows']} test rows, max |dp| = "
          f"{verify['max_abs_proba_diff']:.2e}")
    if not verify["ok"]:
        print("error: the ONNX model does not reproduce the scikit-learn model", file=sys.stderr)
        return 3

    # Evaluate the exported model's own predictions (what the engine will run).
    # With thresholds, what the engine reports: argmax, or benign under the label's threshold.
    onnx_label, onnx_proba = sess.run(None, {INPUT_NAME: test.X})
    evals_argmax = eval_by_trigger(test.y, onnx_label.astype(np.int64), test.trigger, test.tgroup)
    evals = (evals_argmax if thr is None else
             eval_by_trigger(test.y, apply_thresholds(onnx_proba, thr), test.trigger, test.tgroup))
    train_pred = (model.predict(train.X) if thr is None
                  else apply_thresholds(model.predict_proba(train.X), thr))
    train_eval = eval_by_trigger(train.y, train_pred, train.trigger)
    print()
    if thr is not None:
        print(format_thresholds(thr))
        print("(test metrics below apply them; 'argmax' lines are the plain arg-max)")
        print()
    for t in [t for t in evals if t != "all"]:
        if t == "host" and not evals[t]["rows"]:
            continue
        print(format_eval(f"test, trigger={t}" + ("" if thr is None else ", thresholded"), evals[t]))
        if thr is not None and evals[t]["rows"]:
            a = evals_argmax[t]
            print(f"  argmax: macro-F1 {_f(a['macro_f1'])}  benign FPR {_f(a['benign_fpr'])} "
                  f"({a['benign_false_positives']}/{a['benign_rows']})")
        print()
    print(f"train macro-F1 (resubstitution): early={_f(train_eval['early']['macro_f1'])} "
          f"end={_f(train_eval['end']['macro_f1'])}")

    bench = {}
    if args.bench_seconds > 0:
        bench = measure_throughput(sess, test.X, seconds=args.bench_seconds)
        print("onnxruntime throughput, 1 intra-op thread: " + ", ".join(
            f"batch {b['batch_size']}: {b['rows_per_s']:,.0f} rows/s "
            f"({b['rows_per_cpu_s']:,.0f} per CPU-s)" for b in bench.values()))
        if args.min_rows_per_s > 0 and bench["256"]["rows_per_cpu_s"] < args.min_rows_per_s:
            print(f"warning: the final model measured {bench['256']['rows_per_cpu_s']:,.0f} rows/s at "
                  f"batch 256, below --min-rows-per-s {args.min_rows_per_s:,.0f} (its sweep "
                  "candidate passed; the machine may be busy)", file=sys.stderr)

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
            "capture_weight": args.capture_weight,
            "capture_class_power": args.capture_class_power,
            **({} if snapped is None else {"thresholds_snapped_to_float32": snapped}),
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
        "test_argmax": evals_argmax,
        "thresholds": thr,
        "threshold_selection": thr_info,
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
    from threadpoolctl import threadpool_limits
    try:
        # --jobs also caps BLAS threads (the MLP's matrix products); ONNX Runtime
        # sessions set their own thread counts.
        with threadpool_limits(limits=args.jobs):
            return run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
