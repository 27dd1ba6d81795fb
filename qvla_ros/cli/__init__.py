# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Console entry points: argparse -> config dataclass -> library -> exit code."""
