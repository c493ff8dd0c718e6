"""tidewatch_tools.labels: the one label list, as the bundled models and the engine's tests have it."""
import json
import os
import re
from pathlib import Path

import pytest

from tidewatch_tools.labels import LABELS

REPO = Path(__file__).resolve().parents[2]


def onnx_metadata(path):
    """metadata_props (ModelProto field 14: key 1, value 2) of an ONNX file, read as raw protobuf."""
    def varint(b, i):
        n = shift = 0
        while True:
            c = b[i]
            i += 1
            n |= (c & 0x7F) << shift
            shift += 7
            if c < 0x80:
                return n, i

    def fields(b):
        i = 0
        while i < len(b):
            key, i = varint(b, i)
            num, wire = key >> 3, key & 7
            if wire == 0:
                value, i = varint(b, i)
            elif wire == 1:
                value, i = b[i:i + 8], i + 8
            elif wire == 2:
                n, i = varint(b, i)
                value, i = b[i:i + n], i + n
            elif wire == 5:
                value, i = b[i:i + 4], i + 4
            else:
                raise ValueError(f"{path}: protobuf wire type {wire}")
            yield num, value

    meta = {}
    for num, value in fields(Path(path).read_bytes()):
        if num == 14:
            kv = dict(fields(value))
            meta[kv[1].decode()] = kv.get(2, b"").decode()
    return meta


def test_labels_are_six_distinct_names_benign_first():
    assert isinstance(LABELS, tuple)
    assert LABELS == ("benign", "scan", "dos", "bruteforce", "exfil", "c2")
    assert len(set(LABELS)) == len(LABELS)


@pytest.mark.parametrize("model", ["lab", "baseline"])
def test_bundled_models_have_these_labels(model):
    meta = onnx_metadata(REPO / "models" / model / "model.onnx")
    assert meta["tidewatch.model_name"] == model
    assert tuple(meta["tidewatch.labels"].split(",")) == LABELS
    metrics = json.loads((REPO / "models" / model / "metrics.json").read_text())
    assert tuple(metrics["labels"]) == LABELS


def test_engine_test_expects_these_labels():
    text = (REPO / "engine" / "tests" / "model.rs").read_text()
    m = re.search(r"assert_eq!\(info\.labels, \[([^\]]*)\]\)", text)
    assert m, "engine/tests/model.rs no longer asserts the label list"
    assert tuple(re.findall(r'"([^"]+)"', m.group(1))) == LABELS


def python_files():
    """The repository's Python files, without build outputs, virtualenvs and these tests."""
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("target", "build", "__pycache__")]
        for f in files:
            p = Path(root) / f
            if f.endswith(".py") and (REPO / "python" / "tests") not in p.parents:
                yield p


def test_no_script_keeps_its_own_copy():
    literal = re.compile(r"""["']benign["']\s*,\s*["']scan["']\s*,\s*["']dos["']""")
    files = list(python_files())
    assert REPO / "pcaps" / "generate.py" in files
    own = REPO / "python" / "tidewatch_tools" / "labels.py"
    copies = [str(p.relative_to(REPO)) for p in files if p != own and literal.search(p.read_text(encoding="utf-8"))]
    assert copies == []
