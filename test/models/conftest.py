# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Fixtures of the model tests: upstream OpenVLA / OFT folders and their reference forward."""

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope='session')
def up():
    """The helpers of upstream_folders.py (a module, not a test: imported by path)."""
    path = Path(__file__).with_name('upstream_folders.py')
    spec = importlib.util.spec_from_file_location('qvla_test_upstream_folders', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
