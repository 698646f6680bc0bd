# Every target sets up what it needs (a .venv in the checkout) and is safe to run twice.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv demo test lint format kafka-up kafka-down bench clean

help:
	@echo "make demo        run the whole pipeline locally (Kafka, Dynamics simulator, gateway, sample receiver)"
	@echo "make test        run the test suite against a local Kafka"
	@echo "make lint        ruff check, ruff format --check, mypy --strict"
	@echo "make kafka-up    start a single-node Kafka on localhost:9092"
	@echo "make kafka-down  stop it"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

kafka-up:
	@.ci/kafka.sh up

kafka-down:
	@.ci/kafka.sh down

test: $(STAMP) kafka-up
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
