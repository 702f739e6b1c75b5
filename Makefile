# Two commands for a fresh machine:
#   make quickstart   set up (Debian packages when root, a venv, the install) and run the main job
#   make test         set up and run the lint and the test suite (what CI runs: .ci/run calls it)
# Step by step: make apt, make venv, then .venv/bin/mmalign ... (README.md shows each command).

PYTHON ?= python3
VENV ?= .venv
# Every extra the main job, `mmalign serve` and the tests use: one install serves them all.
EXTRAS ?= offline,dev,serve,ray,onnx
APT_PACKAGES ?= tuxpaint-stamps-default espeak-ng chromium chromium-driver
BIN := $(VENV)/bin

.PHONY: setup apt venv quickstart test lint clean-venv

setup: apt venv

# Real media for the main job and the real-model tests (they skip, saying why, without it). Needs root or
# sudo; without either it says so and goes on.
apt:
	@SUDO=""; if [ "$$(id -u)" -ne 0 ]; then command -v sudo >/dev/null && SUDO="sudo" || SUDO="none"; fi; \
	if [ "$$SUDO" = "none" ] || ! command -v apt-get >/dev/null; then \
	  echo "make apt: not root and no sudo (or no apt-get): install $(APT_PACKAGES) yourself"; \
	else \
	  echo "make apt: $(APT_PACKAGES) (log: /tmp/mmalign-apt.log)"; \
	  ($$SUDO apt-get update -q && $$SUDO apt-get install -y -q $(APT_PACKAGES)) >/tmp/mmalign-apt.log 2>&1 \
	    || echo "make apt: apt-get failed (see /tmp/mmalign-apt.log); real-media tests will be skipped"; \
	fi

venv: $(VENV)/.installed

# The torch pin lives in one place, .ci/constraints.txt. recbole (MovieLens) and aisfx (the sound-effects
# checkpoint) install without their own pins, which do not fit.
$(VENV)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c .ci/constraints.txt -e '.[$(EXTRAS)]'
	$(BIN)/pip install -q --no-deps recbole
	$(BIN)/pip install -q --no-deps aisfx==0.1.2
	touch $@

quickstart: setup
	$(BIN)/mmalign quickstart

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
