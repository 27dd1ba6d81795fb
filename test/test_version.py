# Copyright 2026 qvla_ros authors. Apache-2.0.
"""One version: qvla_ros.__version__, which setup.py reads and package.xml must repeat."""

from importlib.metadata import version
from pathlib import Path
import re

import qvla_ros

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_and_the_installed_metadata_carry_the_package_version():
    xml = re.search(r'<version>([^<]+)</version>', (ROOT / 'package.xml').read_text()).group(1)
    assert xml == qvla_ros.__version__ == version('qvla_ros')
