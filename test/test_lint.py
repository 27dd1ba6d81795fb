# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Quality gates: ament flake8 settings over the repo, pep257 over the package API."""

from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]


def _run(module, *args):
    return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_flake8_ament_settings():
    result = _run('flake8', 'qvla_ros', 'test', 'bench', 'launch', 'setup.py')
    assert result.returncode == 0, f'flake8 found problems:\n{result.stdout}{result.stderr}'


def test_pep257_public_api():
    result = _run('pydocstyle', 'qvla_ros')
    assert result.returncode == 0, f'pydocstyle found problems:\n{result.stdout}{result.stderr}'


def test_flake8_actually_checks(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('import os\nx = "double"\n' + 'y = ' + '1 + ' * 30 + '1\n')
    result = _run('flake8', '--config', str(ROOT / 'setup.cfg'), str(bad))
    assert 'F401' in result.stdout and 'Q000' in result.stdout and 'E501' in result.stdout


def test_no_print_outside_cli():
    offenders = []
    for path in (ROOT / 'qvla_ros').rglob('*.py'):
        if 'cli' in path.relative_to(ROOT / 'qvla_ros').parts:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith('print('):
                offenders.append(f'{path.relative_to(ROOT)}:{lineno}')
    assert not offenders, f'print() outside qvla_ros/cli: {offenders}'
