"""models/train/feedback.py: the analysts' feedback file as training rows.

The selection and relabelling run on small synthetic feature CSVs (a stub stands for
`tidewatchd features`); one test runs the real engine on pcaps/demo.pcap when it is built.
"""

import ast
import csv
import datetime
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "models" / "train"))
import feedback  # noqa: E402

TW = REPO / "target" / "release" / "tidewatchd"
META = ["flow_id", "trigger", "first_ts", "last_ts", "proto", "src_ip", "src_port", "dst_ip", "dst_port", "label"]
SCHEMA = {"name": "test-schema", "version": 1, "features": ["k_seen", "f2"]}
# Flows of capture a.pcap: id -> (first_ts, src, dst, dst_port).
FLOWS = {
    101: (1000.0, "10.0.0.1", "10.0.0.2", 22),
    102: (1001.0, "10.0.0.1", "10.0.0.2", 21),
    103: (1002.0, "10.0.0.1", "10.0.0.3", 80),
    104: (1003.0, "10.0.0.9", "10.0.0.2", 22),
    105: (2000.0, "10.0.0.1", "10.0.0.2", 22),
    106: (1004.0, "10.0.0.1", "10.0.0.53", 53),
}
T0 = "1970-01-01T00:16:40.000000Z"  # 1000 s


def iso(seconds):
    t = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_iso_helper_is_rfc3339_of_the_engine():
    assert iso(1000.0) == T0 and iso(5001.25) == "1970-01-01T01:23:21.250000Z"
    assert feedback.rfc3339_micros(iso(1004.5)) == 1_004_500_000
    assert feedback.seconds_micros("1793474468.191054") == 1_793_474_468_191_054


class StubExport:
    """Stands for `tidewatchd features CAPTURE --early-packets K`: one early row per flow per K
    (feature k_seen = K) and one end row per flow, the same in every export."""

    def __init__(self, tmp, fail=()):
        self.tmp, self.fail, self.calls = Path(tmp), set(fail), []

    def __call__(self, capture, k):
        self.calls.append((Path(capture).name, k))
        if Path(capture).name in self.fail:
            raise feedback.ExportError(f"{capture}: not a capture")
        out = self.tmp / f"export-{Path(capture).stem}-k{k}.csv"
        with open(out, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(META + SCHEMA["features"])
            for fid, (t, src, dst, port) in FLOWS.items():
                w.writerow([fid, "early", f"{t:.6f}", f"{t + 0.5:.6f}", "tcp", src, 40000, dst, port, "", k, 1])
            for fid, (t, src, dst, port) in FLOWS.items():
                w.writerow([fid, "end", f"{t:.6f}", f"{t + 9:.6f}", "tcp", src, 40000, dst, port, "", 0, 2])
        (self.tmp / (out.name + ".schema.json")).write_text(json.dumps(SCHEMA))
        return str(out)


def incident(iid, actor, label="scan", first=1000.0, last=1004.5, **kw):
    r = {
        "event_type": "incident",
        "incident_id": iid,
        "state": "closed",
        "label": label,
        "actor": actor,
        "src_count": 1,
        "targets": 99,
        "targets_first": ["10.0.0.2"],
        "ports": 99,
        "ports_first": [22],
        "first_seen": iso(first),
        "last_seen": iso(last),
    }
    r.update(kw)
    return r


def verdict(fid, label):
    t, src, dst, port = FLOWS[fid]
    return {"event_type": "verdict", "flow_id": fid, "label": label, "src_ip": src, "dst_ip": dst, "dst_port": port}


def entry(decision, capture="a.pcap", **kw):
    e = {"ts": "2026-12-01T00:00:00.000000Z", "decision": decision, "note": ""}
    if capture is not None:
        e["capture"] = capture
    e.update(kw)
    return e


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "a.pcap").write_bytes(b"stub")
    (tmp_path / "b.pcap").write_bytes(b"stub")
    return tmp_path


def run(tmp, entries, ks=(4, 8), fail=(), slack=1.0, raw_lines=()):
    path = tmp / "feedback.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in entries) + "".join(x + "\n" for x in raw_lines))
    warned = []
    export = StubExport(tmp, fail)
    header, schema, rows, summary = feedback.build(str(path), list(ks), export, slack, warn=warned.append)
    return header, schema, rows, summary, warned, export


def flows_of(rows):
    """{engine flow id: {(trigger, K): label}} of output rows."""
    out = {}
    for r in rows:
        cap, k, fid = r[0].split("~")
        assert cap == "feedback1"
        out.setdefault(int(fid), {})[(r[1], int(k[1:]))] = r[9]
    return out


def test_flow_false_positive_takes_that_flow_early_per_k_end_once(tmp):
    header, schema, rows, s, warned, export = run(tmp, [entry("false_positive", flow_id=101)])
    assert header == META + SCHEMA["features"]
    assert json.loads(Path(schema).read_text()) == SCHEMA
    assert export.calls == [("a.pcap", 4), ("a.pcap", 8)]
    assert flows_of(rows) == {101: {("early", 4): "benign", ("early", 8): "benign", ("end", 4): "benign"}}
    assert [r[10] for r in rows] == ["4", "0", "8"]  # each early row from its own export
    assert s["entries"] == 1 and s["used"] == 1 and s["overridden"] == 0 and s["unusable_total"] == 0
    assert s["used_decisions"] == {"false_positive": 1, "confirmed": 0}
    assert s["rows"] == 3 and s["rows_by_label"] == {"benign": 3}
    assert s["rows_by_trigger"] == {"early": 2, "end": 1}
    assert s["captures"] == {"feedback1": str(tmp / "a.pcap")}
    assert warned == []


def test_confirmed_flow_takes_the_record_label(tmp):
    *_, rows, s, warned, _ = run(tmp, [entry("confirmed", flow_id=103, record=verdict(103, "c2"))], ks=(8,))
    assert flows_of(rows) == {103: {("early", 8): "c2", ("end", 8): "c2"}}
    assert s["rows_by_label"] == {"c2": 2} and s["used_decisions"] == {"false_positive": 0, "confirmed": 1}


@pytest.mark.parametrize(
    "record, flows",
    [
        (incident(1, "source", src_ip="10.0.0.1"), {101, 102, 103, 106}),  # not 104 (other source), not 105 (after)
        (incident(1, "target", label="dos"), {101, 102, 104}),  # any source
        (incident(1, "target", label="dos", src_ip="10.0.0.1"), {101, 102}),  # the named single source
        (incident(1, "service", label="bruteforce", src_ip="10.0.0.1"), {101}),  # dst and port
        (incident(1, "pair", label="c2", src_ip="10.0.0.1"), {101, 102}),
        (incident(1, "domain", label="exfil", src_ip="10.0.0.1"), {101, 102, 103, 106}),  # src only
        # All responders and ports listed: they bound the rows.
        (
            incident(1, "domain", label="exfil", src_ip="10.0.0.1", targets=1, targets_first=["10.0.0.53"]),
            {106},
        ),
        (incident(1, "source", src_ip="10.0.0.1", targets=1, ports=2, ports_first=[22, 21]), {101, 102}),
    ],
)
def test_incident_rows_by_actor_and_window(tmp, record, flows):
    for decision, want in (("confirmed", record["label"]), ("false_positive", "benign")):
        *_, rows, s, warned, _ = run(tmp, [entry(decision, incident_id=1, record=record)], ks=(8,))
        got = flows_of(rows)
        assert set(got) == flows
        assert {lab for f in got.values() for lab in f.values()} == {want}
        assert s["rows"] == 2 * len(flows) and s["used"] == 1 and s["unusable_total"] == 0
        assert bool(s["notes"]) == (record["actor"] == "domain")


def test_incident_window_slack(tmp):
    rec = incident(1, "source", src_ip="10.0.0.1", first=1001.0, last=1001.0)
    assert set(flows_of(run(tmp, [entry("confirmed", incident_id=1, record=rec)], ks=(8,), slack=0)[2])) == {102}
    assert set(flows_of(run(tmp, [entry("confirmed", incident_id=1, record=rec)], ks=(8,), slack=1)[2])) == {
        101,
        102,
        103,
    }


def test_later_decision_on_the_same_flow_or_incident_wins(tmp):
    rec = incident(7, "service", label="bruteforce", src_ip="10.0.0.1")
    entries = [
        entry("confirmed", flow_id=103, record=verdict(103, "c2")),
        entry("false_positive", incident_id=7, record=rec),
        entry("false_positive", flow_id=103),  # changed their mind
        entry("confirmed", incident_id=7, record=rec),  # and back
        entry("confirmed", capture="b.pcap", incident_id=7, record=rec),  # another capture: its own incident 7
    ]
    *_, rows, s, warned, _ = run(tmp, entries, ks=(8,))
    assert s["entries"] == 5 and s["overridden"] == 2 and s["used"] == 3 and s["unusable_total"] == 0
    assert s["used_decisions"] == {"false_positive": 1, "confirmed": 2}
    by_cap = {}
    for r in rows:
        by_cap.setdefault(r[0].split("~")[0], {})[int(r[0].split("~")[2])] = r[9]
    assert by_cap == {"feedback1": {101: "bruteforce", 103: "benign"}, "feedback2": {101: "bruteforce"}}
    assert s["captures"] == {"feedback1": str(tmp / "a.pcap"), "feedback2": str(tmp / "b.pcap")}
    assert sum("overridden by a later decision" in w for w in warned) == 2


@pytest.mark.parametrize("flow_first", [True, False])
def test_a_decision_on_the_flow_beats_one_on_its_incident(tmp, flow_first):
    fp = entry("false_positive", flow_id=101)
    inc = entry("confirmed", incident_id=2, record=incident(2, "pair", label="c2", src_ip="10.0.0.1"))
    *_, rows, s, _, _ = run(tmp, [fp, inc] if flow_first else [inc, fp], ks=(8,))
    got = flows_of(rows)
    assert got[101] == {("early", 8): "benign", ("end", 8): "benign"}
    assert got[102] == {("early", 8): "c2", ("end", 8): "c2"}
    assert s["rows_in_conflict"] == 2 and s["used"] == 2 and s["rows_by_label"] == {"benign": 2, "c2": 2}


def test_each_unusable_reason_is_counted_and_reported(tmp):
    entries = [
        entry("false_positive", flow_id=101),  # the one usable entry
        entry("false_positive", capture=None, flow_id=102),
        entry("false_positive", capture="gone.pcap", flow_id=102),
        entry("confirmed", incident_id=3),
        entry("confirmed", flow_id=103),  # confirmed what? no record, no label
        entry("confirmed", incident_id=4, record=incident(4, "many")),
        entry("confirmed", flow_id=104, record=verdict(104, "ransomware")),
        entry("confirmed", incident_id=5, record=incident(5, "service", src_ip="10.0.0.1", ports_first=[])),
        entry("confirmed", incident_id=6, record=incident(6, "source")),  # source without src_ip
        entry("false_positive", incident_id=8, record=verdict(101, "scan")),  # a verdict for an incident
        entry("false_positive", capture="b.pcap", flow_id=101),
        entry("false_positive", flow_id=999),
        entry("false_positive", incident_id=9, record=incident(9, "source", src_ip="10.0.0.1", first=5000, last=5001)),
    ]
    raw = ["{not json", '{"decision": "maybe", "flow_id": 1}', '{"decision": "confirmed"}', "", "[1, 2]"]
    *_, rows, s, warned, export = run(tmp, entries, ks=(4,), fail={"b.pcap"}, raw_lines=raw)
    assert s["unusable"] == {
        "malformed": 4,
        "no_capture": 1,
        "capture_missing": 1,
        "no_record": 2,
        "actor_many": 1,
        "unknown_label": 1,
        "bad_record": 3,
        "export_failed": 1,
        "no_rows": 2,
    }
    assert s["entries"] == 17 and s["used"] == 1 and s["overridden"] == 0 and s["unusable_total"] == 16
    assert flows_of(rows) == {101: {("early", 4): "benign", ("end", 4): "benign"}}
    assert sorted(export.calls) == [("a.pcap", 4), ("b.pcap", 4)]  # nothing exported for hopeless entries
    # One message per unusable entry, naming its reason.
    reasons = [re.search(r"unusable \((\w+)\)", w).group(1) for w in warned]
    assert sorted(reasons) == sorted(r for r, n in s["unusable"].items() for _ in range(n))
    text = "\n".join(feedback.summary_lines(s))
    assert "1 used" in text and "16 unusable" in text and "bad_record 3" in text and "export_failed 1" in text


def test_relative_capture_is_beside_the_feedback_file(tmp):
    fb = tmp / "sub"
    fb.mkdir()
    (fb / "c.pcap").write_bytes(b"stub")
    (fb / "feedback.jsonl").write_text(json.dumps(entry("false_positive", capture="c.pcap", flow_id=1)) + "\n")
    entries, malformed, n = feedback.read_feedback(str(fb / "feedback.jsonl"))
    assert malformed == [] and n == 1 and entries[0].capture == str(fb / "c.pcap")


def train_py():
    """train.py's META_COLUMNS and row_origin, read without importing it (it needs numpy)."""
    tree = ast.parse((REPO / "models" / "train" / "train.py").read_text())
    ns = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "META_COLUMNS" for t in node.targets):
            ns["META_COLUMNS"] = ast.literal_eval(node.value)
        if isinstance(node, ast.FunctionDef) and node.name == "row_origin":
            exec(compile(ast.Module([node], []), "train.py", "exec"), ns)
    return ns["META_COLUMNS"], ns["row_origin"]


def test_written_csv_is_what_train_py_reads_as_kind_feedback(tmp):
    header, schema, rows, s, _, _ = run(tmp, [entry("false_positive", flow_id=101)], ks=(4, 8))
    out = tmp / "out" / "feedback.csv"
    feedback.write_csv(str(out), header, rows, schema)
    assert (tmp / "out" / "feedback.csv.schema.json").read_bytes() == Path(schema).read_bytes()
    meta, row_origin = train_py()
    with open(out, newline="") as f:
        got = list(csv.reader(f))
    assert got[0][: len(meta)] == meta and got[0][len(meta) :] == SCHEMA["features"]
    origins = [row_origin(r[0], r[1], 0) for r in got[1:]]
    assert origins == [("feedback1", "early K=4"), ("feedback1", "end"), ("feedback1", "early K=8")]
    # train.py capture_weights / capture_split: the kind is the capture name without its digits.
    assert {re.sub(r"\d+$", "", cap) for cap, _ in origins} == {"feedback"}


def test_cli_writes_no_csv_without_rows_and_the_summary_json(tmp):
    fb = tmp / "feedback.jsonl"
    fb.write_text(json.dumps(entry("false_positive", capture=None, flow_id=1)) + "\n")
    out, summ = tmp / "fb.csv", tmp / "fb.json"
    out.write_text("stale")
    (tmp / "fb.csv.schema.json").write_text("stale")
    # No entry has a capture: nothing is exported, so any existing file stands for tidewatchd.
    rc = feedback.main([str(fb), "--out", str(out), "--summary-out", str(summ), "--tidewatchd", sys.executable])
    assert rc == 0
    assert not out.exists() and not (tmp / "fb.csv.schema.json").exists()
    s = json.loads(summ.read_text())
    assert s["entries"] == 1 and s["used"] == 0 and s["rows"] == 0 and s["out"] is None
    assert s["unusable"]["no_capture"] == 1 and s["unusable_total"] == 1


def test_cli_refuses_a_missing_feedback_file(tmp):
    assert feedback.main([str(tmp / "nope.jsonl"), "--tidewatchd", sys.executable]) == 2


def test_real_engine_on_the_demo_capture(tmp_path):
    if not TW.is_file():
        msg = f"SKIPPED: {TW} is not built (cargo build --release -p tidewatchd): no end-to-end feedback test"
        warnings.warn(msg)
        pytest.skip(msg)
    demo = REPO / "pcaps" / "demo.pcap"
    out = tmp_path / "v.jsonl"
    subprocess.run([str(TW), "replay", str(demo), "--output", f"json:{out}"], check=True, capture_output=True)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    alert = next(r for r in recs if r["event_type"] == "verdict" and r["label"] != "benign")
    svc = [r for r in recs if r["event_type"] == "incident" and r["actor"] == "service"][-1]
    fb = tmp_path / "feedback.jsonl"
    lines = [
        entry("confirmed", capture=str(demo), flow_id=alert["flow_id"], record=alert),
        entry("false_positive", capture=str(demo), incident_id=svc["incident_id"], record=svc),
    ]
    fb.write_text("".join(json.dumps(e) + "\n" for e in lines))
    csv_out, summ = tmp_path / "fb.csv", tmp_path / "fb.json"
    rc = feedback.main(
        [str(fb), "--ks", "4", "8", "--tidewatchd", str(TW), "--work", str(tmp_path / "work")]
        + ["--out", str(csv_out), "--summary-out", str(summ)]
    )
    assert rc == 0
    s = json.loads(summ.read_text())
    assert s["used"] == 2 and s["unusable_total"] == 0
    with open(csv_out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == s["rows"] > 0
    mine = [r for r in rows if r["flow_id"].endswith(f"~{alert['flow_id']}")]
    assert mine and {r["src_ip"] for r in mine} == {alert["src_ip"]}
    assert {r["label"] for r in mine} == {alert["label"]}
    others = [r for r in rows if r not in mine]
    assert others and {r["label"] for r in others} == {"benign"}
    assert {(r["src_ip"], r["dst_ip"], r["dst_port"]) for r in others} == {
        (svc["src_ip"], svc["targets_first"][0], str(svc["ports_first"][0]))
    }
    assert (tmp_path / "fb.csv.schema.json").read_bytes() == subprocess.run(
        [str(TW), "schema"], check=True, capture_output=True
    ).stdout


def test_model_card_line(tmp):
    import make_card

    assert make_card.feedback_text(None) == "Analysts' feedback (`make model FEEDBACK=...`): no feedback file."
    rec = incident(1, "domain", label="exfil", src_ip="10.0.0.1")
    entries = [entry("confirmed", incident_id=1, record=rec), entry("false_positive", capture=None, flow_id=2)]
    *_, s, _, _ = run(tmp, entries, ks=(8,))
    line = make_card.feedback_text(s, {"feedback": 5.0, "pub": 0.5})
    assert f"`{tmp / 'feedback.jsonl'}`" in line
    assert "2 decisions: 1 used (0 false positive(s) relabelled benign, 1 confirmed)" in line
    assert "1 unusable (no_capture 1)" in line
    assert "8 training rows (exfil 8) from 1 capture(s), weighted 5 x (`--capture-weight feedback=5`)" in line
    assert "Note: 1 domain (exfil) incident(s) selected by src_ip and time only" in line
    s["rows"] = 0
    assert "no row selected, so not trained on" in make_card.feedback_text(s, {})
