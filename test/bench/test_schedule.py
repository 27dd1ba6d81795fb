# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The chunk schedule study's seed argument."""

from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest  # noqa: E402

from bench.schedule import parse_seeds  # noqa: E402


def test_seed_ranges_are_checked():
    assert parse_seeds('90000:90050') == range(90000, 90050)
    for bad in ('90050:90000', '5:5', '1-4', 'a:b', ':3'):
        with pytest.raises(SystemExit, match='A:B'):
            parse_seeds(bad)
