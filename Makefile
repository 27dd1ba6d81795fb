# The public interface of the repo: the README and CI use only these targets.
SHELL := /bin/bash
VENV := .venv
export ROS_LOG_DIR ?= $(CURDIR)/build/ros_log
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test demo lint bench-kernels gpu-check clean

setup:
	@scripts/setup.sh

test: setup
	$(VENV)/bin/python -m pytest -q

demo: setup
	$(VENV)/bin/qvla-ros demo

lint: setup
	$(VENV)/bin/python -m flake8 qvla_ros test bench launch setup.py
	$(VENV)/bin/python -m pydocstyle qvla_ros

bench-kernels: setup
	$(VENV)/bin/python bench/kernels.py

clean:
	rm -rf build $(VENV)
