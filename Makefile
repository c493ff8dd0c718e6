# The two commands of the README are `make demo` and `make test`; each
# installs what it needs first (scripts/setup.sh is idempotent).
SHELL := /bin/bash
CARGO ?= cargo
SHARED_PCAPS ?= $(abspath ../shared/pcaps)

.PHONY: demo test test-python setup setup-test test-bare-core build install install-files model model-baseline pcaps bench bench-micro clean fuzz-smoke floods

demo: setup
	$(CARGO) build --release -p tidewatchd
	@mkdir -p build
	./target/release/tidewatchd replay pcaps/demo.pcap --output json:build/demo-verdicts.jsonl

test: setup-test
	python3 -m ruff check .
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	TIDEWATCH_SHARED_PCAPS=$(SHARED_PCAPS) $(CARGO) test --workspace --release
	# After the cargo build: the end-to-end tests use target/release/tidewatchd.
	python3 -m pytest -q python/tests
	$(MAKE) test-bare-core
	$(MAKE) fuzz-smoke

# The Python tools (scripts + python/tidewatch_tools): ruff over every .py file
# (ruff.toml), then the tests of the shared package (python/tests; seconds).
test-python: setup-test
	python3 -m ruff check .
	python3 -m pytest -q python/tests

# Installs the daemon, its models, ONNX Runtime, the example config (never
# over an existing one) and the systemd unit: PREFIX=/usr/local, DESTDIR for staging.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= /lib/systemd/system
BIN ?= target/release/tidewatchd
install: setup
	$(CARGO) build --release -p tidewatchd
	$(MAKE) install-files

install-files:
	install -Dm755 $(BIN) $(DESTDIR)$(PREFIX)/bin/tidewatchd
	for m in lab baseline; do \
	    install -Dm644 models/$$m/model.onnx $(DESTDIR)$(PREFIX)/share/tidewatch/models/$$m/model.onnx; \
	    install -Dm644 models/$$m/MODEL_CARD.md $(DESTDIR)$(PREFIX)/share/tidewatch/models/$$m/MODEL_CARD.md; \
	done
	install -Dm644 .ort/libonnxruntime.so.1.31.1 $(DESTDIR)$(PREFIX)/lib/tidewatch/libonnxruntime.so.1.31.1
	test -e $(DESTDIR)$(SYSCONFDIR)/tidewatch/tidewatch.toml || \
	    install -Dm644 daemon/tidewatch.example.toml $(DESTDIR)$(SYSCONFDIR)/tidewatch/tidewatch.toml
	install -d $(DESTDIR)$(UNITDIR)
	sed 's#/usr/local/#$(PREFIX)/#g' daemon/tidewatchd.service > $(DESTDIR)$(UNITDIR)/tidewatchd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/tidewatchd.service

setup:
	@bash scripts/setup.sh

# The library with no optional feature: neither libpcap nor ONNX Runtime
# in its dependency tree, and it still classifies the caller's packets.
# Then every public item is documented, with and without the features.
test-bare-core:
	$(CARGO) clippy -p tidewatch --no-default-features --lib -- -D warnings
	@if $(CARGO) tree -p tidewatch -e normal --no-default-features --prefix none | grep -E '^(pcap|ort) '; then \
	    echo "test-bare-core: pcap or ort is in the tree without default features" >&2; exit 1; fi
	$(CARGO) test --release -p tidewatch --no-default-features --test bare_core
	RUSTDOCFLAGS="-D missing_docs -D warnings" $(CARGO) doc -p tidewatch --no-deps --no-default-features
	RUSTDOCFLAGS="-D missing_docs -D warnings" $(CARGO) doc -p tidewatch --no-deps

setup-test:
	@bash scripts/setup.sh --test

# Regenerates the small captures committed in pcaps/.
pcaps:
	python3 pcaps/generate.py all --out pcaps

# Regenerates the bundled default model, models/lab (as root: lab captures,
# training, evaluation, card; about 45 min from scratch, 8 min with captures).
# `make model FEEDBACK=path/to/feedback.jsonl` also trains on the analysts'
# decisions of `tidewatchd feedback --capture PCAP` (FEEDBACK_WEIGHT, default 20;
# models/train/feedback.py; see models/train/build-lab.sh).
model: model-lab

# The synthetic-only comparison model, models/baseline (minutes).
model-baseline: setup
	bash models/train/build.sh

# Benchmarks (see benches/README.md); figures, never timed tests.
bench: setup
	$(CARGO) build --release -p tidewatchd -p tidewatch-benches
	test -f build/bench/bench.pcap || bash pcaps/bench/make-bench-capture.sh
	./target/release/replay_bench build/bench/bench.pcap --runs 5 --json build/replay-bench.json
	# The flood-heavy capture (issue 13): SYN and UDP floods and a scan between benign sessions.
	test -f build/bench/flood.pcap || ./target/release/flood_gen mixed build/bench/flood.pcap
	./target/release/replay_bench build/bench/flood.pcap --runs 3 --json build/replay-bench-flood.json
	./target/release/flow_memory 1000000
	./target/release/verdict_json pcaps/demo.pcap --seconds 3
	bash benches/peers/compare.sh build/bench/bench.pcap --runs 3
	bash benches/peers/compare.sh build/bench/flood.pcap --runs 3

bench-micro: setup
	$(CARGO) bench -p tidewatch-benches --bench micro

clean:
	rm -rf build target

# Real nmap, hping3 and hydra runs (root; ~2 min), each replayed: is each attack one incident?
.PHONY: incident-check
incident-check: setup
	cargo build --release -p tidewatchd
	bash pcaps/lab/make-incident-check.sh --out build/incidents
	python3 pcaps/lab/incident_summary.py --dir build/incidents

# Lab corpus (real tools in network namespaces; root) and the model trained on it (tens of minutes).
.PHONY: lab-pcap model-lab
lab-pcap:
	bash pcaps/lab/make-lab.sh --seed $${SEED:-1} --out build/lab
model-lab: setup
	bash models/train/build-lab.sh

# A bounded fuzz run of every target (fuzz/run.sh; nightly + cargo-fuzz,
# SKIPPED without them): FUZZ_SMOKE_SECONDS each, 6 targets; about 3.5 min
# with a cold build on 2 cores, 1.5 min warm. Hours: see fuzz/README.md.
FUZZ_SMOKE_SECONDS ?= 8
fuzz-smoke:
	TIDEWATCH_SHARED_PCAPS=$(SHARED_PCAPS) FUZZ_CODEGEN_UNITS=16 bash fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

# Hostile traffic (SYN, fragment and out-of-order floods, a 3 GB connection):
# pkt/s, peak RSS and counters per cap (benches/floods.sh); minutes, GBs in build/floods/.
floods: setup
	bash benches/floods.sh

