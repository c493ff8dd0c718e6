#!/usr/bin/env python3
"""The analysts' feedback file (`tidewatchd feedback`) as training rows.

Each line of the feedback file is one decision on a flow verdict or an incident:

    {"ts": ..., "decision": "false_positive"|"confirmed", "note": ...,
     "flow_id": N | "incident_id": N, "record": {...}, "capture": "/abs/path.pcap"}

For every decision with a capture, the capture's feature rows are exported by the engine
itself (`tidewatchd features --early-packets K`, once per K, as build-lab.sh exports the
lab captures; exports are cached in --work) and the rows the decision is about are kept:

- a flow verdict (`flow_id`): the rows of that flow (flow ids are deterministic for a capture);
- an incident (`incident_id`, needs its `record`): the rows whose flow starts inside
  [first_seen - slack, last_seen + slack] and belongs to the incident's actor:
  source -> src_ip; target -> dst_ip = targets_first[0] (and src_ip when the record names
  the single source); service -> src_ip, dst_ip = targets_first[0], dst_port = ports_first[0];
  pair -> src_ip, dst_ip = targets_first[0]; domain -> src_ip only (feature rows carry no DNS
  names, so every flow of the client in the window is taken; the summary notes it);
  many -> cannot be selected (unusable). A record that lists all of the incident's
  responders (`targets` = len(targets_first), at most 5) or all its ports (`ports` =
  len(ports_first)) also bounds the rows to those: the incident grouped no other flow.

Selected rows are labelled `benign` for a false positive and with the record's label when
confirmed. Of several decisions on the same flow or incident of the same capture only the
last counts (an analyst may change their mind). Where two decisions select the same row
with different labels (a flow and an incident it is in; two incidents), a decision on the
flow itself wins over one on an incident, else the later one (counted: rows_in_conflict).

Every decision that gives no row is counted under a reason (REASONS) and reported on
stderr, never skipped silently. The rows go to one CSV in the format train.py reads (the
export's columns, `<csv>.schema.json` copied beside it); flow ids become
`feedback<N>~k<K>~<engine flow id>` (N numbers the captures), so train.py sees captures of
kind `feedback`: `--capture-weight feedback=W` weights them and `--no-validation-kind
feedback` keeps them out of the threshold validation. Early rows come from every K, end
and host rows once (from the first K), as models/train/lab.py prepare does.

    python3 models/train/feedback.py build/feedback.jsonl --ks 4 8 16 \\
        --out build/lab/features/feedback.csv --summary-out build/lab/features/feedback.summary.json

Exit codes: 0 ok (also when some or all decisions are unusable: see the summary),
2 bad input (unreadable feedback file, no tidewatchd, exports of different schemas).
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime
import decimal
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))
from tidewatch_tools.labels import LABELS  # noqa: E402

KIND = "feedback"
DECISIONS = ("false_positive", "confirmed")
ACTORS = ("source", "target", "service", "pair", "domain", "many")
DEFAULT_SLACK_S = 1.0
# Why a decision gave no row, in the order they are checked.
REASONS = {
    "malformed": "not a JSON object with a decision and one flow_id or incident_id",
    "no_capture": 'no "capture" (record the decision with tidewatchd feedback --capture PCAP)',
    "capture_missing": "the capture is not on disk",
    "no_record": "an incident, or a confirmed verdict, without its record (tidewatchd feedback --from)",
    "actor_many": 'an incident of actor "many" (too many actors at once): its flows cannot be told apart',
    "unknown_label": "confirmed with a record label that is not one of the model's labels",
    "bad_record": "the record lacks a field the selection needs, or is not the flow/incident the entry names",
    "export_failed": "tidewatchd features failed on the capture",
    "no_rows": "no feature row of the capture matched (another capture? other timeouts than the export's?)",
}
# Columns of a `tidewatchd features` CSV that train.py reads before the features.
FLOW_ID, TRIGGER, FIRST_TS, SRC_IP, DST_IP, DST_PORT, LABEL = 0, 1, 2, 5, 7, 8, 9


class InputError(Exception):
    """Bad input: reported as a message with exit code 2."""


class ExportError(Exception):
    """`tidewatchd features` failed on a capture."""


class Unusable(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


@dataclass
class Entry:
    line: int  # 1-based line of the feedback file
    decision: str  # false_positive | confirmed
    kind: str  # flow | incident
    id: int
    record: Optional[dict]
    capture: Optional[str]  # absolute path, or None

    def describe(self) -> str:
        return f"line {self.line} ({self.kind} {self.id}, {self.decision})"

    def key(self):
        return (self.capture, self.kind, self.id)


@dataclass
class Selection:
    """Which rows of a capture an entry is about, and their new label."""

    entry: Entry
    label: str
    flow_id: Optional[str] = None  # a flow verdict
    window: Optional[Tuple[int, int]] = None  # an incident: row first_ts in [lo, hi], microseconds
    src: Optional[object] = None
    dsts: Optional[frozenset] = None  # None: any
    ports: Optional[frozenset] = None  # None: any
    notes: List[str] = field(default_factory=list)

    def matches(self, row: "Row") -> bool:
        if self.flow_id is not None:
            return row.flow_id == self.flow_id
        lo, hi = self.window
        return (
            lo <= row.first_us <= hi
            and (self.src is None or row.src == self.src)
            and (self.dsts is None or row.dst in self.dsts)
            and (self.ports is None or row.dst_port in self.ports)
        )


@dataclass
class Row:
    k: int
    cells: List[str]
    flow_id: str
    first_us: int
    src: object
    dst: object
    dst_port: int


# --------------------------------------------------------------------------- reading


def rfc3339_micros(text) -> int:
    """'2026-10-31T19:21:08.191054Z' -> microseconds since the epoch."""
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r}")
    dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (dt - epoch) // datetime.timedelta(microseconds=1)


def seconds_micros(text: str) -> int:
    """'1793474468.191054' (a feature CSV's first_ts) -> microseconds, exactly."""
    return int(decimal.Decimal(text) * 1_000_000)


def ip(text):
    try:
        return ipaddress.ip_address(str(text).strip())
    except ValueError:
        return None


def read_feedback(path: str) -> Tuple[List[Entry], List[Tuple[int, str]], int]:
    """(entries, malformed (line, why), non-blank lines) of a feedback file. A relative
    capture path is taken relative to the feedback file's directory."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the feedback file {path}: {e}")
    base = os.path.dirname(os.path.abspath(path))
    entries, malformed, n = [], [], 0
    for no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        n += 1
        try:
            e = json.loads(text)
        except ValueError as err:
            malformed.append((no, f"not JSON ({err})"))
            continue
        if not isinstance(e, dict):
            malformed.append((no, "not a JSON object"))
            continue
        decision = e.get("decision")
        if decision not in DECISIONS:
            malformed.append((no, f"decision {decision!r} is not one of {', '.join(DECISIONS)}"))
            continue
        ids = [(k, e[k]) for k in ("flow_id", "incident_id") if e.get(k) is not None]
        if len(ids) != 1 or not isinstance(ids[0][1], int) or isinstance(ids[0][1], bool) or ids[0][1] < 0:
            malformed.append((no, "wants exactly one of flow_id, incident_id (a non-negative integer)"))
            continue
        record = e.get("record")
        if record is not None and not isinstance(record, dict):
            malformed.append((no, "record is not a JSON object"))
            continue
        capture = e.get("capture")
        if capture is not None:
            if not isinstance(capture, str) or not capture:
                malformed.append((no, "capture is not a path"))
                continue
            capture = os.path.normpath(os.path.join(base, os.path.expanduser(capture)))
        kind = "flow" if ids[0][0] == "flow_id" else "incident"
        entries.append(Entry(no, decision, kind, ids[0][1], record, capture))
    return entries, malformed, n


def latest_decisions(entries: Sequence[Entry]) -> Tuple[List[Entry], List[Entry]]:
    """(the last entry of each flow/incident of each capture, in file order; the earlier ones)."""
    last = {e.key(): e for e in entries}
    kept = [e for e in entries if last[e.key()] is e]
    overridden = [e for e in entries if last[e.key()] is not e]
    return kept, overridden


def selection(e: Entry, slack_us: int) -> Selection:
    """What an entry selects; raises Unusable (capture checks excepted: see build)."""
    r = e.record
    if r is None and (e.kind == "incident" or e.decision == "confirmed"):
        raise Unusable("no_record")
    if e.kind == "incident" and r.get("actor") == "many":
        raise Unusable("actor_many")
    label = "benign"
    if e.decision == "confirmed":
        label = r.get("label")
        if label not in LABELS:
            raise Unusable("unknown_label", f"label {label!r}")
    want = "verdict" if e.kind == "flow" else "incident"
    if r is not None and r.get("event_type", want) != want:
        raise Unusable("bad_record", f"the record is {r.get('event_type')!r}, the entry names a {e.kind}")
    idkey = "flow_id" if e.kind == "flow" else "incident_id"
    if r is not None and r.get(idkey, e.id) != e.id:
        raise Unusable("bad_record", f"the record's {idkey} is {r.get(idkey)}")
    if e.kind == "flow":
        return Selection(e, label, flow_id=str(e.id))
    actor = r.get("actor")
    if actor not in ACTORS:
        raise Unusable("bad_record", f"actor {actor!r}")
    try:
        lo, hi = rfc3339_micros(r.get("first_seen")), rfc3339_micros(r.get("last_seen"))
    except ValueError as err:
        raise Unusable("bad_record", f"first_seen/last_seen: {err}")
    s = Selection(e, label, window=(lo - slack_us, hi + slack_us))
    targets, ports = r.get("targets_first") or [], r.get("ports_first") or []
    if not isinstance(targets, list) or not isinstance(ports, list):
        raise Unusable("bad_record", "targets_first/ports_first are not lists")
    # A record that lists all its responders (ports) -- at most 5 -- bounds the flows it groups.
    if targets and r.get("targets") == len(targets) and all(ip(t) is not None for t in targets):
        s.dsts = frozenset(ip(t) for t in targets)
    if ports and r.get("ports") == len(ports) and all(isinstance(p, int) for p in ports):
        s.ports = frozenset(ports)
    s.src = ip(r.get("src_ip")) if r.get("src_ip") is not None else None
    if actor in ("source", "service", "pair", "domain") and s.src is None:
        raise Unusable("bad_record", f"actor {actor} without a src_ip")
    if actor in ("target", "service", "pair"):
        first = ip(targets[0]) if targets else None
        if first is None:
            raise Unusable("bad_record", f"actor {actor} without targets_first")
        s.dsts = frozenset([first])
    if actor == "service":
        if not ports or not isinstance(ports[0], int):
            raise Unusable("bad_record", "actor service without ports_first")
        s.ports = frozenset(ports[:1])
    if actor == "domain":
        s.notes.append("domain")
    return s


def read_export(path: str, k: int, end_rows: bool) -> Tuple[List[str], List[Row]]:
    """(header, rows) of one export; end and host rows only when end_rows (the first K)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rd = csv.reader(f)
            header = next(rd, None)
            if header is None:
                raise InputError(f"{path}: empty export")
            rows = []
            for cells in rd:
                if not cells or (cells[TRIGGER] != "early" and not end_rows):
                    continue
                try:
                    first = seconds_micros(cells[FIRST_TS])
                    port = int(cells[DST_PORT])
                except (decimal.InvalidOperation, ValueError, IndexError):
                    raise InputError(f"{path}: bad row {cells[:LABEL]}")
                rows.append(Row(k, cells, cells[FLOW_ID], first, ip(cells[SRC_IP]), ip(cells[DST_IP]), port))
    except OSError as e:
        raise InputError(f"cannot read {path}: {e}")
    return header, rows


# --------------------------------------------------------------------------- export


class Exporter:
    """`tidewatchd features CAPTURE --early-packets K -o OUT`, cached in `work`: an export is
    kept while it is newer than its capture and was written by this engine's schema."""

    def __init__(self, tidewatchd: str, work: str):
        self.tw, self.work = tidewatchd, work
        self._schema: Optional[bytes] = None

    def schema(self) -> bytes:
        if self._schema is None:
            try:
                p = subprocess.run([self.tw, "schema"], capture_output=True, check=True)
            except (OSError, subprocess.CalledProcessError) as e:
                raise InputError(f"{self.tw} schema failed ({e}); build it (cargo build --release -p tidewatchd)")
            self._schema = p.stdout
        return self._schema

    def __call__(self, capture: str, k: int) -> str:
        os.makedirs(self.work, exist_ok=True)
        tag = hashlib.sha256(capture.encode()).hexdigest()[:10]
        out = os.path.join(self.work, f"{os.path.basename(capture)}-{tag}-k{k}.csv")
        sch = out + ".schema.json"
        if (
            os.path.isfile(out)
            and os.path.isfile(sch)
            and os.path.getmtime(out) > os.path.getmtime(capture)
            and open(sch, "rb").read() == self.schema()
        ):
            return out
        cmd = [self.tw, "features", capture, "--early-packets", str(k), "-o", out]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            for f in (out, sch):
                if os.path.exists(f):
                    os.remove(f)
            tail = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ExportError(f"{' '.join(cmd)}: exit {p.returncode}: {tail}")
        return out


# --------------------------------------------------------------------------- building


def build(
    feedback_path: str,
    ks: Sequence[int],
    export: Callable[[str, int], str],
    slack_s: float = DEFAULT_SLACK_S,
    warn: Callable[[str], None] = lambda msg: print(f"feedback: {msg}", file=sys.stderr),
):
    """Reads the feedback file and selects and relabels rows. `export(capture, k)` returns the
    path of the capture's feature CSV for that K (its schema beside it) or raises ExportError.
    Returns (header, schema path or None, output rows as cell lists, summary dict)."""
    if not ks:
        raise InputError("no K given")
    entries, malformed, n_lines = read_feedback(feedback_path)
    unusable = collections.Counter()
    for no, why in malformed:
        unusable["malformed"] += 1
        warn(f"line {no}: unusable (malformed): {why}")
    kept, overridden = latest_decisions(entries)
    for e in overridden:
        warn(f"{e.describe()}: overridden by a later decision on the same {e.kind}")

    def give_up(e: Entry, reason: str, detail: str = ""):
        unusable[reason] += 1
        warn(f"{e.describe()}: unusable ({reason}): {detail or REASONS[reason]}")

    by_capture: Dict[str, List[Selection]] = collections.defaultdict(list)
    for e in kept:
        if e.capture is None:
            give_up(e, "no_capture")
            continue
        if not os.path.isfile(e.capture):
            give_up(e, "capture_missing", f"{e.capture} not found")
            continue
        try:
            by_capture[e.capture].append(selection(e, int(round(slack_s * 1e6))))
        except Unusable as u:
            give_up(e, u.reason, u.detail)

    header, schema_path, schema_bytes = None, None, None
    labelled: Dict[str, Dict[int, Tuple[str, str]]] = {}  # capture -> row index -> (label, entry kind)
    rows_of: Dict[str, List[Row]] = {}
    used, decisions, notes = [], collections.Counter(), collections.Counter()
    rows_in_conflict = 0
    for cap in sorted(by_capture):
        sels = by_capture[cap]
        rows: List[Row] = []
        try:
            for i, k in enumerate(ks):
                path = export(cap, k)
                h, rr = read_export(path, k, end_rows=(i == 0))
                sch = open(path + ".schema.json", "rb").read() if os.path.isfile(path + ".schema.json") else None
                if sch is None:
                    raise InputError(f"{path}: no {path}.schema.json beside the export")
                if header is None:
                    header, schema_path, schema_bytes = h, path + ".schema.json", sch
                elif h != header or sch != schema_bytes:
                    raise InputError(f"{path}: another schema than {schema_path} (exports of different engines?)")
                rows += rr
        except ExportError as err:
            for s in sorted(sels, key=lambda s: s.entry.line):
                give_up(s.entry, "export_failed", str(err))
            continue
        lab: Dict[int, Tuple[str, str]] = {}
        of_flow = collections.defaultdict(list)
        for i, r in enumerate(rows):
            of_flow[r.flow_id].append(i)
        for s in sorted(sels, key=lambda s: s.entry.line):
            if s.flow_id is not None:
                hit = of_flow.get(s.flow_id, [])
            else:
                hit = [i for i, r in enumerate(rows) if s.matches(r)]
            if not hit:
                give_up(s.entry, "no_rows", f"{REASONS['no_rows']} ({os.path.basename(cap)})")
                continue
            used.append(s.entry)
            decisions[s.entry.decision] += 1
            notes.update(s.notes)
            for i in hit:
                old = lab.get(i)
                if old is not None and old[0] != s.label:
                    rows_in_conflict += 1
                # A decision on the flow itself beats one on an incident it is in; else the later one.
                if old is None or not (old[1] == "flow" and s.entry.kind == "incident"):
                    lab[i] = (s.label, s.entry.kind)
        if lab:
            labelled[cap], rows_of[cap] = lab, rows

    out_rows: List[List[str]] = []
    names: Dict[str, str] = {}
    by_label, by_trigger = collections.Counter(), collections.Counter()
    for n, cap in enumerate(sorted(labelled), start=1):
        name = f"{KIND}{n}"
        names[name] = cap
        for i, r in enumerate(rows_of[cap]):
            if i not in labelled[cap]:
                continue
            cells = list(r.cells)
            cells[LABEL] = labelled[cap][i][0]
            cells[FLOW_ID] = f"{name}~k{r.k}~{r.flow_id}"
            out_rows.append(cells)
            by_label[cells[LABEL]] += 1
            by_trigger[cells[TRIGGER]] += 1
    note_text = []
    if notes["domain"]:
        note_text.append(
            f"{notes['domain']} domain (exfil) incident(s) selected by src_ip and time only: "
            "feature rows carry no DNS names, so every flow of the client in the window was taken "
            "(to the incident's responders and ports when its record lists them all)"
        )
    summary = {
        "feedback_file": feedback_path,
        "sha256": hashlib.sha256(open(feedback_path, "rb").read()).hexdigest(),
        "entries": n_lines,
        "used": len(used),
        "used_decisions": {d: decisions[d] for d in DECISIONS},
        "overridden": len(overridden),
        "unusable": {r: unusable[r] for r in REASONS},
        "unusable_total": sum(unusable.values()),
        "rows": len(out_rows),
        "rows_by_label": {c: by_label[c] for c in LABELS if by_label[c]},
        "rows_by_trigger": dict(sorted(by_trigger.items())),
        "rows_in_conflict": rows_in_conflict,
        "captures": names,
        "ks": list(ks),
        "slack_s": slack_s,
        "notes": note_text,
    }
    assert summary["used"] + summary["overridden"] + summary["unusable_total"] == n_lines
    return header, schema_path, out_rows, summary


def write_csv(out: str, header: List[str], rows: List[List[str]], schema_path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    shutil.copyfile(schema_path, out + ".schema.json")


def summary_lines(s: dict) -> List[str]:
    d = s["used_decisions"]
    lines = [
        f"{s['feedback_file']}: {s['entries']} entries: {s['used']} used ({d['false_positive']} false positive, "
        f"{d['confirmed']} confirmed), {s['overridden']} overridden by a later decision, "
        f"{s['unusable_total']} unusable",
        f"rows {s['rows']}"
        + (" (" + ", ".join(f"{c} {n}" for c, n in s["rows_by_label"].items()) + ")" if s["rows"] else "")
        + (f" from {len(s['captures'])} capture(s)" if s["captures"] else "")
        + f", K {' '.join(map(str, s['ks']))}",
    ]
    bad = [(r, n) for r, n in s["unusable"].items() if n]
    if bad:
        lines.append("unusable by reason: " + ", ".join(f"{r} {n}" for r, n in bad))
    if s["rows_in_conflict"]:
        lines.append(
            f"{s['rows_in_conflict']} row(s) chosen by two decisions with different labels "
            "(the flow's own decision, else the later one, kept)"
        )
    lines += [f"note: {t}" for t in s["notes"]]
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description="Turn the analysts' feedback file (tidewatchd feedback) into labelled feature rows.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    ap.add_argument("feedback", help="the feedback file (JSON lines of tidewatchd feedback)")
    ap.add_argument("--out", help="feature CSV to write (with <csv>.schema.json); none when no row is selected")
    ap.add_argument(
        "--ks",
        nargs="+",
        type=int,
        default=[8],
        metavar="K",
        help="--early-packets of the exports, as the rest of training (default 8; end/host rows from the first)",
    )
    ap.add_argument("--tidewatchd", default=os.environ.get("TW") or os.path.join(REPO, "target/release/tidewatchd"))
    ap.add_argument(
        "--work", default=os.path.join(REPO, "build/feedback"), help="export cache (default build/feedback)"
    )
    ap.add_argument(
        "--slack",
        type=float,
        default=DEFAULT_SLACK_S,
        metavar="S",
        help=f"seconds added on both sides of an incident's [first_seen, last_seen] (default {DEFAULT_SLACK_S})",
    )
    ap.add_argument("--summary-out", metavar="JSON", help="write the summary as JSON (for the model card)")
    args = ap.parse_args(argv)
    try:
        if not os.path.isfile(args.tidewatchd):
            raise InputError(f"{args.tidewatchd} not found (cargo build --release -p tidewatchd, or --tidewatchd)")
        header, schema_path, rows, summary = build(
            args.feedback, args.ks, Exporter(args.tidewatchd, args.work), args.slack
        )
    except InputError as e:
        print(f"feedback: error: {e}", file=sys.stderr)
        return 2
    summary["out"] = None
    if args.out:
        for f in (args.out, args.out + ".schema.json"):
            if os.path.exists(f):
                os.remove(f)  # never leave a stale file for build-lab.sh to train on
        if rows:
            write_csv(args.out, header, rows, schema_path)
            summary["out"] = args.out
    for line in summary_lines(summary):
        print(f"feedback: {line}", file=sys.stderr)
    if args.out:
        print(
            f"feedback: wrote {args.out}" if rows else f"feedback: no row selected: {args.out} not written",
            file=sys.stderr,
        )
    if args.summary_out:
        with open(args.summary_out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
