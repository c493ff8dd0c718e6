"""nfstream peer: iterate every flow of FILE with statistical features on.

Prints one JSON line: tool, version, packets (sum of the flows'
bidirectional_packets: the packets nfstream accounted to a flow), flows,
seconds (NFStreamer construction to the last flow, i.e. excluding the
Python interpreter's start and imports), n_meters.
"""

import json
import sys
import time

import nfstream


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: nfstream_peer.py FILE [N_DISSECTIONS]", file=sys.stderr)
        return 2
    path = sys.argv[1]
    n_dissections = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    started = time.perf_counter()
    streamer = nfstream.NFStreamer(
        source=path, statistical_analysis=True, n_dissections=n_dissections
    )
    flows = packets = 0
    check = 0.0
    for f in streamer:
        flows += 1
        packets += f.bidirectional_packets
        # touch a statistical feature so the flows are really materialised
        check += f.bidirectional_mean_piat_ms
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "tool": "nfstream",
                "version": nfstream.__version__,
                "packets": packets,
                "flows": flows,
                "seconds": seconds,
                "n_meters": streamer.n_meters,
                "n_dissections": n_dissections,
                "checksum": round(check, 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
