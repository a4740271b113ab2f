# Every target does its own set-up: a pinned virtual env and the face-model assets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= pipelines/default.yaml
GPU_BUNDLE ?= exported/gpu_bundle
ARGS   ?=
PYTEST_ARGS ?=
# pytest processes (pytest-xdist): the tests train and export in TensorFlow, each on its own core
PYTEST_WORKERS ?= 2

.PHONY: install assets train test lint tune export bench evaluate ablation readout gpu-bundle clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,beam]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt tensorflow-serving-api
	touch $(STAMP)

assets: install
	$(BIN)/age-estimation assets

train: assets
	$(BIN)/age-estimation train --config $(CONFIG) $(ARGS)

evaluate: assets
	$(BIN)/age-estimation evaluate --config $(CONFIG) $(ARGS)

ablation: assets
	$(BIN)/age-estimation ablation --config $(CONFIG) $(ARGS)

readout: assets
	$(BIN)/age-estimation readout --config $(CONFIG) $(ARGS)

tune: assets
	$(BIN)/age-estimation tune --config $(CONFIG) $(ARGS)

export: assets
	$(BIN)/age-estimation export --config $(CONFIG) $(ARGS)

bench: assets
	$(BIN)/age-estimation bench --config $(CONFIG) $(ARGS)

# The GPU check's bundle (run here): a trained run's model, prepared clips with their TF ages, and the wheels.
gpu-bundle: assets
	$(BIN)/python -m age_estimation.bench.gpu_bundle --config $(CONFIG) --out $(GPU_BUNDLE) $(ARGS)

test: assets
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check --line-length 110 age_estimation tests

clean:
	rm -rf runs exported data/cache
