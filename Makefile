# Every target does its own set-up: a fresh clone needs nothing but Python 3.11 and make.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DO_NOT_TRACK := 1
export BENTOML_DO_NOT_TRACK := True

.PHONY: setup run test lint proto proto-check unit integration bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

## run: the platform on embedded defaults (everything that exists so far).
run: setup
	$(BIN)/vigie pipeline run
	$(BIN)/vigie train --model flight_delay --from 2013-01-01 --to 2013-02-28 --reason "make run"
	$(BIN)/vigie registry promote flight_delay candidate --to staging --reason "make run"
	$(BIN)/vigie registry promote flight_delay staging --to production --reason "make run"
	$(BIN)/vigie train --model arrival_delay --from 2013-01-01 --to 2013-02-28 --reason "make run"
	$(BIN)/vigie registry promote arrival_delay candidate --to staging --reason "make run"
	$(BIN)/vigie registry promote arrival_delay staging --to production --reason "make run"
	$(BIN)/vigie registry list
	$(BIN)/vigie audit verify

## test: lint, types, import contracts, then unit, integration and e2e tests.
test: lint
	$(BIN)/python -m pytest -p no:cacheprovider

## proto: generate the OIP v2 gRPC code from its .proto (the contract; never edit the output).
PROTO := src/vigie/serving/proto/grpc_predict_v2.proto
proto: setup
	$(BIN)/python -m grpc_tools.protoc -Isrc --python_out=src --grpc_python_out=src \
		--pyi_out=src $(PROTO)

## proto-check: fail when the committed generated code differs from a fresh generation.
proto-check: proto
	git diff --exit-code -- src/vigie/serving/proto/

lint: setup
	$(BIN)/ruff check src tests loadtests
	$(BIN)/ruff format --check src tests loadtests
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: setup
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit

integration: setup
	$(BIN)/python -m pytest -p no:cacheprovider tests/integration tests/e2e

## bench: pipeline against its bulk-load floor; training time; ONNX Runtime against torch eager.
bench: setup
	$(BIN)/python loadtests/bench_pipeline.py
	$(BIN)/python loadtests/bench_models.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
