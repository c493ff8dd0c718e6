"""The flow classes, in the order of the models' output columns."""

# The one label list of the Python tools. The engine does not read it: it takes the
# labels from each model's metadata (`tidewatch.labels`, written by
# models/train/train.py from this tuple), and the engine's and daemon's tests
# (engine/tests/model.rs, daemon/tests/cli.rs) and python/tests/test_labels.py check
# the bundled models' list against this order. Changing it means retraining.
LABELS = ("benign", "scan", "dos", "bruteforce", "exfil", "c2")
