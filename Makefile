# The public interface of the repo: the README and CI use only these targets.
SHELL := /bin/bash
VENV := .venv
export ROS_LOG_DIR ?= $(CURDIR)/build/ros_log
# The CPU extension is compiled per checkout (clones sharing ~/.cache rebuilt each other's).
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/build/torch_extensions
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test demo lint format docs bench-kernels reference closed-loop gpu-check clean

setup:
	@scripts/setup.sh

test: setup
	$(VENV)/bin/python -m pytest -q

demo: setup
	$(VENV)/bin/qvla-ros demo

lint: setup
	$(VENV)/bin/python -m flake8 qvla_ros test bench launch scripts experiments setup.py
	$(VENV)/bin/python -m pydocstyle qvla_ros
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m mypy

# Rewrite the layout the tests check (indentation, whitespace, blank lines; setup.cfg)
format: setup
	$(VENV)/bin/python -m autopep8 --in-place --recursive qvla_ros test bench launch scripts \
		experiments setup.py

# Refill the generated blocks of README.md and docs/, then build the site into build/site
docs: setup
	$(VENV)/bin/python scripts/docs.py
	$(VENV)/bin/mkdocs build --strict

# Rebuild a shipped reference policy and its 4-bit checkpoint: make reference SUITE=tabletop
reference: setup
	scripts/reference.sh $(SUITE)

# The closed-loop comparison (bench/results/closed_loop_<suite>.json/.md/.png)
closed-loop: setup
	$(VENV)/bin/python bench/closed_loop.py --suite $(SUITE) --checkpoint checkpoints/$(SUITE)-small \
		--calibration build/reference-$(SUITE)/calib $(ARGS)

bench-kernels: setup
	$(VENV)/bin/python bench/kernel_speed.py

# Every GPU test and benchmark in one run (needs a CUDA torch; see bench/gpu_check.sh)
gpu-check:
	bash bench/gpu_check.sh

clean:
	rm -rf build $(VENV)
