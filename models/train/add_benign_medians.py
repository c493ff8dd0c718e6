#!/usr/bin/env python3
"""Add the benign medians to an existing model without retraining it.

    .venv-train/bin/python models/train/add_benign_medians.py --model models/lab/model.onnx CSV...

Reads feature CSVs in train.py's input format (`tidewatchd features` exports with labels
joined, or a `lab.py prepare` output; each with its `<csv>.schema.json`), takes the rows
labelled `benign` (every trigger), computes the per-feature medians with train.py's own
`benign_medians` and writes them into the model as metadata `tidewatch.benign_medians`
(what train.py writes into every model it trains). Nothing else in the model changes:
graph, weights and the other metadata are kept; the model answers the same on every row
(checked in ONNX Runtime on the CSVs' rows before the file is replaced).

With --metrics FILE (repeatable), train.py / lab.py metrics JSONs that describe the model
get its new sha256, size and metadata (their other figures are unchanged).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402


def load_benign(paths, features):
    """X [N, F] float32 and y of the labelled rows of `paths`, checked against `features`."""
    Xs, ys, per_file = [], [], []
    for i, p in enumerate(paths):
        schema = T.load_schema(p)
        if schema["features"] != features:
            raise T.InputError(f"{p}: features differ from the model's "
                               f"({T.describe_mismatch(features, schema['features'])})")
        X, y, *_ = T.read_csv(p, schema, i)
        Xs.append(X)
        ys.append(y)
        per_file.append((p, int(np.sum(y == T.LABEL_INDEX["benign"]))))
    return np.concatenate(Xs), np.concatenate(ys), per_file


def update_metrics(path, model_bytes, meta):
    with open(path, encoding="utf-8") as f:
        m = json.load(f)
    mods = [m.get("model"), (m.get("train") or {}).get("model")]
    for mod in [x for x in mods if isinstance(x, dict)]:
        mod["sha256"] = hashlib.sha256(model_bytes).hexdigest()
        mod["file_bytes"] = len(model_bytes)
        if "onnx" in mod and "metadata_props" in mod["onnx"]:
            mod["onnx"]["metadata_props"] = dict(meta)
    if isinstance(m.get("model_meta"), dict):
        m["model_meta"] = dict(meta)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(m, f, indent=2)
        f.write("\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="ONNX model to update in place")
    ap.add_argument("--metrics", action="append", default=[], metavar="JSON",
                    help="metrics JSON describing the model: update its sha256, size and metadata")
    ap.add_argument("csv", nargs="+", help="feature CSVs with labels (benign rows are used)")
    args = ap.parse_args(argv)
    import onnx

    model = onnx.load(args.model)
    meta = {p.key: p.value for p in model.metadata_props}
    features = meta["tidewatch.features"].split(",")
    try:
        X, y, per_file = load_benign(args.csv, features)
        medians = T.benign_medians(X, y)
    except T.InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_benign = sum(n for _, n in per_file)
    for p, n in per_file:
        print(f"{p}: {n} benign rows")

    before = T.ort_session(open(args.model, "rb").read())
    if T.BENIGN_MEDIANS_KEY in meta:
        print(f"{args.model}: replacing its {T.BENIGN_MEDIANS_KEY}")
        for p in model.metadata_props:
            if p.key == T.BENIGN_MEDIANS_KEY:
                p.value = T.medians_json(medians)
    else:
        model.metadata_props.add(key=T.BENIGN_MEDIANS_KEY, value=T.medians_json(medians))
    onnx.checker.check_model(model, full_check=True)
    model_bytes = model.SerializeToString()
    after = T.ort_session(model_bytes)
    for a, b in zip(before.run(None, {T.INPUT_NAME: X}), after.run(None, {T.INPUT_NAME: X})):
        if not np.array_equal(a, b):
            print("error: the model answers differently after the metadata change", file=sys.stderr)
            return 3
    print(f"outputs identical before/after on {len(X)} rows")

    tmp = args.model + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model_bytes)
    os.replace(tmp, args.model)
    new_meta = {p.key: p.value for p in onnx.load(args.model).metadata_props}
    for path in args.metrics:
        update_metrics(path, model_bytes, new_meta)
        print(f"updated {path}")
    print(f"wrote {args.model}: {T.BENIGN_MEDIANS_KEY} from {n_benign} benign rows "
          f"({len(model_bytes):,} bytes, sha256 {hashlib.sha256(model_bytes).hexdigest()})")
    print(" ".join(f"{f}={v:g}" for f, v in zip(features, medians)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
