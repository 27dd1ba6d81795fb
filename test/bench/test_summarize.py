# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The generated tables of docs/*.md match bench/results."""

from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest  # noqa: E402

from bench.summarize import render_docs, write_docs  # noqa: E402


def test_docs_tables_are_generated_from_the_committed_results():
    assert write_docs(check=True) == [], 'run `python bench/summarize.py --docs`'


def test_a_stale_or_unknown_block_is_refilled_or_refused():
    stale = 'intro\n<!-- bench:faults -->\nold numbers\n<!-- /bench -->\nend\n'
    fresh = render_docs(stale)
    assert 'old numbers' not in fresh and 'Fault campaign' in fresh and fresh.endswith('end\n')
    with pytest.raises(ValueError, match='unknown generated block'):
        render_docs('<!-- bench:nope -->\n<!-- /bench -->')
