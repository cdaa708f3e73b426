# ptybench: `make demo` then `make test` on a fresh machine. Every target is idempotent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --constraint constraints.txt
# Thread budget for timing runs and tests (2-core CI machines): set before any import.
export OMP_NUM_THREADS ?= 2

.PHONY: demo test test-fast install install-dev install-gpu gpu-check lint bench bench-check bench-report check-ptychodus peers real-scans procure measurement-log gate-study browser clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e ".[torch,fft]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) -e ".[dev,torch,fft,mpi,bench]"
	touch $@

install: $(VENV)/.installed  ## create .venv and install ptybench (NumPy with mkl_fft, and the CPU torch backend)

install-dev: $(VENV)/.installed-dev  ## install what the tests need (pytest, torch CPU, MPI, asv)

# A CUDA build of torch comes from the index your site uses for it: set TORCH_INDEX, e.g.
# TORCH_INDEX="--index-url <your CUDA wheel index> --extra-index-url <your package index>"; pip's configured
# index otherwise.
TORCH_INDEX ?=

install-gpu: $(VENV)/.installed  ## on a CUDA machine: CuPy with its toolkit and a CUDA torch
	$(BIN)/python -m pip install "cupy-cuda12x[ctk]" "numba-cuda[cu12]" "torch==2.13.0" $(TORCH_INDEX)

demo: install  ## reconstruct the embedded default dataset: table + plot in reports/demo
	$(BIN)/ptybench demo

# The suite in two passes: every test but the few that measure the machine itself, on TEST_WORKERS processes
# (pytest-xdist; each pinned to one core by tests/conftest.py; an idle worker takes tests queued for a busy one,
# so the pass does not end on one worker's tail), then those few alone (collected from the files that mark any).
TEST_WORKERS ?= auto
EXCLUSIVE_FILES = $(shell grep -rl --include='test_*.py' 'mark.exclusive' tests)
test: install-dev  ## run the test suite (parallel pass, then the machine-measuring tests alone)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not exclusive"
	$(BIN)/python -m pytest -q -m exclusive $(EXCLUSIVE_FILES)

test-fast: install-dev  ## the suite without slow tests
	$(BIN)/python -m pytest -q -m "not slow"

# Benchmarks (asv). BENCH selects a profile: Quick (every engine and backend here, about 5 min on 2 cores)
# or Full (large sizes; GPU sizes skip without a GPU). bench-check judges with `ptybench compare` (statistics
# in ptybench/timing_stats.py).
BENCH  ?= Quick
BASE   ?= HEAD~1
ASV    := $(BIN)/asv

bench: install-dev  ## asv benchmarks of this checkout in this environment (BENCH=Quick|Full)
	$(ASV) machine --yes > /dev/null
	$(ASV) run --python=same --set-commit-hash $$(git rev-parse HEAD) --bench "$(BENCH)" --show-stderr

bench-check: install-dev  ## regression gate: BASE vs HEAD (ptybench compare on asv samples); fails when slower, bigger or less accurate
	$(ASV) machine --yes > /dev/null
	$(BIN)/ptybench compare $(BASE) HEAD --bench "$(BENCH)"

bench-report: install-dev  ## publish asv's HTML (git-ignored .asv/html) and print its path
	$(ASV) publish
	@echo "report: $$(pwd)/.asv/html/index.html"

# On a lent CUDA machine (no internet; torch and CuPy already installed there). Not yet run on a GPU:
# written without one. Records, test output and the tables go to reports/gpu/. Steps that measure start
# with "-": a failed point is a record (and exit status 1), and the steps after it still run, since a GPU
# session is rare. Most telling first: tests, the table, sequential vs batched ePIE, streaming, kernels.
GPU_PYTHON ?= python3
GPU_SIZES  ?= farfield-128-16384,farfield-256-4096
GPU_LARGE  ?= farfield-128-16384
GPU_PIE    ?= farfield-128-4096
GPU_BACKENDS ?= cupy,torch:cuda
GPU_SWEEP   = $(GPU_PYTHON) -m ptybench sweep --backends $(GPU_BACKENDS) --no-progress

gpu-check:  ## on a CUDA machine: GPU agreement tests + the GPU table (records in reports/gpu/)
	$(GPU_PYTHON) -m pip install --no-deps --no-build-isolation -e .
	mkdir -p reports/gpu
	$(GPU_PYTHON) -m ptybench backends | tee reports/gpu/backends.txt
	$(GPU_PYTHON) -m pytest -q -p no:cacheprovider tests/engines/test_backends.py tests/engines/test_kernels.py \
		tests/engines/test_cuda_kernels.py tests/engines/test_pie_batched.py | tee reports/gpu/tests.txt
	-$(GPU_SWEEP) --datasets $(GPU_SIZES) --engines DM,RAAR,ePIE,ePIE-batched,ML --iterations 5 --warmup 2 \
		--timeout 240 --out reports/gpu/results.jsonl
	-$(GPU_SWEEP) --datasets $(GPU_PIE) --engines ePIE,ePIE-batched,rPIE,rPIE-batched --iterations 15 \
		--warmup 0 --target-error 0.05 --timeout 240 --out reports/gpu/batched-pie.jsonl
	-$(GPU_SWEEP) --datasets $(GPU_LARGE) --engines DM --frames-per-block 2048 \
		--parameters '{"residency": "streamed"}' --iterations 5 --warmup 2 --out reports/gpu/streaming.jsonl
	-PTYBENCH_KERNELS=reference $(GPU_SWEEP) --datasets $(GPU_LARGE) --engines DM,ML --iterations 5 \
		--warmup 2 --out reports/gpu/reference-kernels.jsonl
	-$(GPU_PYTHON) -m ptybench table reports/gpu/results.jsonl reports/gpu/streaming.jsonl --csv reports/gpu/table.csv \
		| tee reports/gpu/table.txt
	-$(GPU_PYTHON) -m ptybench table reports/gpu/batched-pie.jsonl | tee reports/gpu/batched-pie.txt
	-$(GPU_PYTHON) -m ptybench table reports/gpu/reference-kernels.jsonl | tee reports/gpu/reference-kernels.txt

check-ptychodus: install-dev  ## interop with ptychodus (APS): it reads our CXI files, we run on its files
	test -x .venv-ptychodus/bin/python || $(PYTHON) -m venv .venv-ptychodus
	.venv-ptychodus/bin/python -m pip install -q "ptychodus==1.7.0"
	PTYBENCH_PTYCHODUS_PYTHON=$(CURDIR)/.venv-ptychodus/bin/python $(BIN)/python -m pytest -q \
		tests/datasets/test_ptychodus_interop.py

# Peer codes in venvs of their own (pty-chi's DM and LSQML, PtyLab's ePIE), each with the CPU torch pin;
# pty-chi's torchvision import is stubbed by ptybench/peers/run_ptychi.py. Table in reports/peers/.
PEERS_DATASET    ?= farfield-128-1024
PEERS_ITERATIONS ?= 20
PEERS_REPEATS    ?= 3

.venv-ptychi/.installed:
	test -x .venv-ptychi/bin/python || $(PYTHON) -m venv .venv-ptychi
	.venv-ptychi/bin/python -m pip install -q "ptychi==2.2.0" "torch==2.13.0"
	touch $@

.venv-ptylab/.installed:
	test -x .venv-ptylab/bin/python || $(PYTHON) -m venv .venv-ptylab
	.venv-ptylab/bin/python -m pip install -q "ptylab==0.3.7" "torch==2.13.0"
	touch $@

.venv-cdtools/.installed:
	test -x .venv-cdtools/bin/python || $(PYTHON) -m venv .venv-cdtools
	.venv-cdtools/bin/python -m pip install -q "cdtools-py==0.3.2" "torch==2.13.0"
	touch $@

peers: install .venv-ptychi/.installed .venv-ptylab/.installed .venv-cdtools/.installed  ## ptybench vs pty-chi (DM, LSQML), PtyLab (ePIE) on synthetic data, and vs pty-chi and cdtools on the measured P25 scan: reports/peers/, reports/real/
	PTYBENCH_PTYCHI_PYTHON=$(CURDIR)/.venv-ptychi/bin/python PTYBENCH_PTYLAB_PYTHON=$(CURDIR)/.venv-ptylab/bin/python \
		$(BIN)/python -m ptybench.peers.compare --dataset $(PEERS_DATASET) --iterations $(PEERS_ITERATIONS) \
		--repeats $(PEERS_REPEATS) --out reports/peers/
	PTYBENCH_CDTOOLS_PYTHON=$(CURDIR)/.venv-cdtools/bin/python PTYBENCH_PTYCHI_PYTHON=$(CURDIR)/.venv-ptychi/bin/python \
		$(BIN)/python -m ptybench.peers.real_scan \
		--dataset p25-nearfield --iterations 50 --out reports/real/

real-scans: install  ## every engine on the measured P25 scan (pty-chi and cdtools beside it where `make peers` built them): reports/real/
	$(BIN)/python -m ptybench.peers.real_scan --dataset p25-nearfield --iterations 50 --out reports/real/

# Procurement bundle of this machine (results, forecast, HTML report, manifest) in reports/procure/LABEL.
PROFILE ?= quick
LABEL   ?= $(shell hostname)

procure: install  ## the procurement workload (PROFILE=quick|standard|full): bundle in reports/procure/LABEL
	$(BIN)/ptybench procure --profile $(PROFILE) --label "$(LABEL)" --out reports/procure/$(LABEL)

# The dated measurement log, generated from the results files committed in docs/measurements/ (never by hand).
measurement-log: install-dev  ## docs/measurement-log.md from docs/measurements/*.jsonl (with change points)
	$(BIN)/ptybench history docs/measurements/*.jsonl --markdown docs/measurement-log.md

gate-study: install  ## the gate's false-alarm and detection rates on this machine (about 50 min): reports/gate/
	$(BIN)/python -m ptybench.studies.gate_calibration --comparisons 20 --processes 10 --first-look 5 \
		--slowdowns 10,25 --out reports/gate

browser:  ## headless Chromium for the report's browser test (Debian/Ubuntu, as root; CI runs it)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
				echo "browser: apt-get install chromium failed: the browser test will skip"; \
		else echo "browser: chromium missing and cannot apt-get here: the browser test will skip"; fi; }

lint: install-dev  ## ruff over the tree (the style CI expects)
	$(BIN)/ruff check .

clean:  ## remove the virtual environment and generated reports (keeps the dataset cache)
	rm -rf $(VENV) reports/demo .pytest_cache
