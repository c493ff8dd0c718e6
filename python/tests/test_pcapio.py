"""tidewatch_tools.pcapio: round trips, the committed captures, tshark's packet counts."""
import io
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tidewatch_tools import pcapio
from tidewatch_tools.pcapio import PcapError, read_packets

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO / "pcaps"
LINKTYPES = PCAPS / "linktypes"

# (ts in microseconds, data, orig_len or None)
RECORDS_US = [
    (1_767_225_600_000_001, b"\x01\x02\x03", None),
    (1_767_225_600_999_999, bytes(range(60)), 1514),  # cut by the snap length
    (1_767_225_601_000_000, b"", None),
    (4_294_967_295_123_456, b"\xff" * 7, None),      # the last second a u32 holds
]


def records(nsec):
    """RECORDS_US in the writer's unit (ns: + 789 ns, which microseconds cannot hold)."""
    return [((ts * 1000 + 789) if nsec else ts, data, orig) if orig is not None
            else ((ts * 1000 + 789) if nsec else ts, data) for ts, data, orig in RECORDS_US]


def check_packets(pkts, nsec, linktype):
    assert len(pkts) == len(RECORDS_US)
    for p, (ts_us, data, orig) in zip(pkts, RECORDS_US):
        assert p.linktype == linktype
        assert p.data == data
        assert p.orig_len == (len(data) if orig is None else orig)
        assert p.ts_us == ts_us
        assert p.ts_ns == ts_us * 1000 + (789 if nsec else 0)
        assert p.ts_sec == ts_us // 1_000_000
        assert p.ts == pytest.approx(ts_us / 1e6, abs=2e-6)


@pytest.mark.parametrize("endian,nsec,magic", [
    ("<", False, "d4c3b2a1"), (">", False, "a1b2c3d4"), ("<", True, "4d3cb2a1"), (">", True, "a1b23c4d"),
])
def test_classic_round_trip(tmp_path, endian, nsec, magic):
    path = tmp_path / "x.pcap"
    n = pcapio.write_pcap(str(path), 113, records(nsec), nsec=nsec, endian=endian, snaplen=1000)
    assert n == len(RECORDS_US)
    raw = path.read_bytes()
    assert raw[:4].hex() == magic
    assert raw == pcapio.pcap_bytes(113, records(nsec), nsec=nsec, endian=endian, snaplen=1000)
    assert struct.unpack(endian + "I", raw[16:20])[0] == 1000
    assert len(raw) == 24 + sum(16 + len(d) for _, d, _ in RECORDS_US)
    check_packets(list(read_packets(path)), nsec, 113)


@pytest.mark.parametrize("nsec", [False, True])
def test_pcapng_round_trip(tmp_path, nsec):
    path = tmp_path / "x.pcapng"
    n = pcapio.write_pcapng(str(path), 1, records(nsec), nsec=nsec, if_name=b"eth0", application=b"test")
    assert n == len(RECORDS_US)
    raw = path.read_bytes()
    assert raw[:4] == b"\x0a\x0d\x0d\x0a" and raw[8:12] == b"\x4d\x3c\x2b\x1a"
    assert b"eth0" in raw and b"test" in raw
    check_packets(list(read_packets(path)), nsec, 1)


def test_pcapng_sections_block_types_and_resolutions():
    """Both byte orders, several interfaces, if_tsresol 10^-n and 2^-n, if_tsoffset, EPB/SPB/PB and
    blocks that are skipped."""
    frame = bytes(range(50))  # not a multiple of 4: padded in the blocks
    le = (pcapio.pcapng_shb([(4, b"t")])
          + pcapio.pcapng_idb(1, 65535, [(2, b"eth0")])                    # 0: us
          + pcapio.pcapng_idb(113, 0, [(9, bytes([9]))])                  # 1: ns, no snap length
          + pcapio.pcapng_epb(1_000_000_500_000, frame)                   # 1000000.5 s
          + pcapio.pcapng_block(pcapio.PCAPNG_NRB, b"\0\0\0\0")           # skipped
          + pcapio.pcapng_epb(2_000_000_000_000_000_001, frame[:10], interface=1, orig_len=50,
                              options=[(1, b"a comment")])
          + pcapio.pcapng_block(pcapio.PCAPNG_SPB, struct.pack("<I", len(frame)) + frame)
          + pcapio.pcapng_block(pcapio.PCAPNG_PB, struct.pack("<HHIIII", 0, 0, 0, 7, 3, 3) + b"abc")
          + pcapio.pcapng_epb(0, frame, interface=5))                     # no such interface: skipped
    be = (pcapio.pcapng_shb(endian=">")
          + pcapio.pcapng_idb(101, 65535, [(9, bytes([0x80 | 20])), (14, struct.pack(">q", 100))], endian=">")
          + pcapio.pcapng_epb(3 << 19, frame, endian=">"))                # 1.5 s in 2^-20 s units, + 100 s
    pkts = list(read_packets(le + be))
    assert [(p.linktype, p.data, p.orig_len) for p in pkts] == [
        (1, frame, 50), (113, frame[:10], 50), (1, frame, 50), (1, b"abc", 3), (101, frame, 50)]
    assert [p.ts_ns for p in pkts] == [1_000_000_500_000_000, 2_000_000_000_000_000_001, 0, 7000, 101_500_000_000]
    assert pkts[4].ts == 101.5 and pkts[4].ts_res == 1 << 20


def test_committed_captures_match_expected_json():
    """Every capture of pcaps/linktypes (but the gzip one) as EXPECTED.json describes it."""
    facts = json.loads((LINKTYPES / "EXPECTED.json").read_text())
    checked = 0
    for name, f in facts.items():
        if name.endswith(".gz"):
            continue
        pkts = list(read_packets(LINKTYPES / name))
        assert len(pkts) == f["packets"], name
        assert [p.linktype for p in pkts] == f["link_types"], name
        assert (pkts[0].ts_ns, pkts[-1].ts_ns) == (f["first_ts_ns"], f["last_ts_ns"]), name
        for k in f.get("no_timestamp_packets", []):
            assert pkts[k - 1].ts_ns == 0
        checked += 1
    assert checked >= 25


def test_truncated_files():
    full = list(read_packets(LINKTYPES / "eth.pcap"))
    assert len(list(read_packets(LINKTYPES / "truncated.pcapng"))) == 8
    cut = list(read_packets(LINKTYPES / "truncated.pcap"))
    assert cut == full[:8]
    kept = list(read_packets(LINKTYPES / "truncated.pcap", partial_last=True))
    assert kept[:8] == full[:8] and len(kept) == 9
    assert 0 < len(kept[8].data) < len(full[8].data) and full[8].data.startswith(kept[8].data)


def test_max_caplen_stops_reading():
    sizes = [len(p.data) for p in read_packets(PCAPS / "tiny_tcp.pcap")]
    first_big = next(i for i, n in enumerate(sizes) if n > 100)
    assert len(list(read_packets(PCAPS / "tiny_tcp.pcap", max_caplen=100))) == first_big


def test_sources_path_bytes_file_agree():
    path = PCAPS / "tiny_tcp.pcap"
    a = list(read_packets(path))
    assert a == list(read_packets(str(path))) == list(read_packets(path.read_bytes()))
    with open(path, "rb") as f:
        assert list(read_packets(f)) == a
    assert list(read_packets(io.BytesIO(path.read_bytes()))) == a


def test_not_a_capture():
    for data in (b"", b"GET / HTTP/1.1\r\n\r\n", b"\x1f\x8b\x08\x00" + bytes(40)):
        with pytest.raises(PcapError):
            list(read_packets(data))
    with pytest.raises(ValueError, match="not a pcap file"):
        list(read_packets(LINKTYPES / "EXPECTED.md"))


def test_rewriting_committed_captures_is_byte_identical(tmp_path):
    """The writer writes what pcaps/generate.py committed (classic pcap and pcapng)."""
    for name in ("tiny_tcp.pcap", "demo.pcap", "linktypes/malformed.pcap"):
        pkts = list(read_packets(PCAPS / name))
        out = tmp_path / "out.pcap"
        pcapio.write_pcap(str(out), pkts[0].linktype, [(p.ts_us, p.data, p.orig_len) for p in pkts])
        assert out.read_bytes() == (PCAPS / name).read_bytes(), name
    pkts = list(read_packets(LINKTYPES / "eth.pcapng"))
    out = tmp_path / "out.pcapng"
    pcapio.write_pcapng(str(out), 1, [(p.ts_ns, p.data) for p in pkts], nsec=True, if_name=b"eth0",
                        application=b"tidewatch pcaps/generate.py")
    assert out.read_bytes() == (LINKTYPES / "eth.pcapng").read_bytes()
    assert pcapio.pcap_bytes(1, [(p.ts_ns // 1000, p.data) for p in pkts], endian=">") == \
        (LINKTYPES / "eth-be.pcap").read_bytes()


TSHARK_FILES = ["tiny_tcp.pcap", "demo.pcap", "linktypes/eth-be.pcap", "linktypes/eth-ns.pcap",
                "linktypes/eth.pcapng", "linktypes/multi-if.pcapng", "linktypes/two-sections.pcapng",
                "linktypes/tsoffset.pcapng", "linktypes/unsupported.pcap"]


@pytest.mark.parametrize("name", TSHARK_FILES)
def test_packets_and_times_match_tshark(name):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (bash scripts/setup.sh --test installs it)")
    path = PCAPS / name
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    pkts = list(read_packets(path))
    assert len(pkts) == len(out) > 0  # as `tshark -r FILE -T fields -e frame.number | wc -l`
    assert [line.split("\t")[1] for line in out] == [f"{p.ts_ns // 10**9}.{p.ts_ns % 10**9:09d}" for p in pkts]
