"""Shared helpers of Tidewatch's Python tools (standard library only).

- ``labels``: the class labels, in the models' column order.
- ``pcapio``: the one pcap / pcapng reader and writer.
- ``flowkey``: the engine's flow key (a direction-free 5-tuple).

The scripts are run as plain files (``python3 pcaps/generate.py ...``); each puts
``<repo>/python`` on ``sys.path`` itself before importing from here.
"""
