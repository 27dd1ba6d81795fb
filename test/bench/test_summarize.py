# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Every result block renders from the committed results."""

from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import summarize  # noqa: E402


def test_every_block_renders_from_the_committed_results():
    for name, block in summarize.BLOCKS.items():
        text = block()
        assert text and 'None' not in text.split('|')[0], name
