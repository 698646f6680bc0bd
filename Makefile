# Every target sets up what it needs (a .venv in the checkout) and is safe to run twice.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv demo test lint format kafka-up kafka-down bench soak clean browser

help:
	@echo "make demo        run the whole pipeline locally (Kafka, Dynamics simulator, gateway, sample receiver)"
	@echo "make test        run the test suite against a local Kafka"
	@echo "make lint        ruff check, ruff format --check, mypy --strict"
	@echo "make format      ruff check --fix, ruff format: what make lint asks for"
	@echo "make bench       the benchmarks of bench/, as ratios to a baseline of the same run"
	@echo "make soak        20 minutes at 200 changes/s through SIGKILLs and a broker restart (SOAK_ARGS)"
	@echo "make helm-check  helm lint, render and kubeconform the chart, then its tests (builds the tools once)"
	@echo "make browser     install Debian's chromium for the console's browser tests (root, apt-get)"
	@echo "make kafka-up    start a single-node Kafka on localhost:9092"
	@echo "make kafka-down  stop it"

venv: $(STAMP)

# pip's output goes to install.log and is shown only when the install fails: setuptools prints a
# warning block about editable installs on every success, which says nothing to a user of `make`.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the virtualenv in $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/pip install --upgrade pip && $(BIN)/pip install -e '.[dev]'; } >$(VENV)/install.log 2>&1 \
	  || { cat $(VENV)/install.log; echo "pip install failed; its log: $(VENV)/install.log"; exit 1; }
	@touch $(STAMP)

kafka-up:
	@.ci/kafka.sh up

kafka-down:
	@.ci/kafka.sh down

# The console's browser tests drive Debian's chromium through Playwright (its own browser download is
# not reachable). Installed once; where it cannot be (not root, no apt-get), those tests skip and say why.
CHROMIUM := /usr/bin/chromium

browser:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	    || echo "make browser: installing chromium failed; the browser tests will skip"; \
	else \
	  echo "make browser: $(CHROMIUM) is missing and needs root and apt-get; the browser tests will skip"; \
	fi

test: $(STAMP) kafka-up browser
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gateway tests
	$(BIN)/ruff format --check gateway tests
	$(BIN)/mypy gateway

format: $(STAMP)
	$(BIN)/ruff check --fix gateway tests
	$(BIN)/ruff format gateway tests

demo: $(STAMP) kafka-up
	$(BIN)/python -m gateway.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Chart checks: helm lint --strict, helm template (default values, and ci/full-values.yaml: split mode
# with monitoring and declared instances) piped to kubeconform -strict against offline Kubernetes
# schemas, for the oldest and a recent Kubernetes; then the tests of tests/ops. The tools are built
# into .cache/ by .ci/helm-tools.sh (Go module proxy, PyPI) the first time.
HELM_KUBE_VERSIONS ?= 1.25.0 1.37.0
CHART := helm/event-gateway
KUBECONFORM_SCHEMAS = $(CURDIR)/.cache/k8s-schemas/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json

.PHONY: helm-check
helm-check: $(STAMP)
	KUBERNETES_VERSIONS="$(HELM_KUBE_VERSIONS)" .ci/helm-tools.sh
	.cache/bin/helm lint --strict $(CHART)
	.cache/bin/helm lint --strict $(CHART) -f $(CHART)/ci/full-values.yaml
	@set -eo pipefail; for version in $(HELM_KUBE_VERSIONS); do \
	  for values in "" "-f $(CHART)/ci/full-values.yaml"; do \
	    echo "helm template $(CHART) $$values --kube-version $$version | kubeconform -strict"; \
	    .cache/bin/helm template event-gateway $(CHART) --namespace event-gateway $$values \
	      --kube-version $$version \
	    | .cache/bin/kubeconform -strict -ignore-missing-schemas -summary \
	      -kubernetes-version $$version -schema-location '$(KUBECONFORM_SCHEMAS)' -; \
	  done; \
	done
	$(BIN)/pytest -q -p no:cacheprovider tests/ops

# Benchmarks (#7): ingest, delivery, latency, idle scale and a profile, against the local Kafka and the
# simulator, each beside a baseline measured in the same run. Prints the table and merges the results into
# bench/results/<UTC date>.json. BENCH_ARGS: e.g. --quick, or --only ingest,delivery. Outside `make test`,
# which smoke-tests every benchmark at a tiny size (tests/bench). Profiles use py-spy when it is installed
# in the venv (.venv/bin/pip install py-spy), else cProfile.
BENCH_ARGS ?=

bench: $(STAMP) kafka-up
	$(BIN)/ruff check bench tests/bench
	$(BIN)/ruff format --check bench tests/bench
	$(BIN)/mypy bench tests/bench
	$(BIN)/python -m bench $(BENCH_ARGS)

# Its own broker on free ports, so that the restart inside it leaves :9092 alone.
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)
