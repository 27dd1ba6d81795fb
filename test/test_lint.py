# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Quality gates: ament flake8 settings over the repo, pep257 over the package API."""

from pathlib import Path
import subprocess
import sys

ROOT = Path(__file__).resolve().parents[1]


def _run(module, *args):
    return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT,
                          capture_output=True, text=True)


SOURCES = ('qvla_ros', 'test', 'bench', 'launch', 'scripts', 'experiments', 'setup.py')


def test_flake8_ament_settings():
    result = _run('flake8', *SOURCES)
    assert result.returncode == 0, f'flake8 found problems:\n{result.stdout}{result.stderr}'


def test_pep257_public_api():
    result = _run('pydocstyle', 'qvla_ros')
    assert result.returncode == 0, f'pydocstyle found problems:\n{result.stdout}{result.stderr}'


def test_flake8_actually_checks(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('import os\nx = "double"\n' + 'y = ' + '1 + ' * 30 + '1\n')
    result = _run('flake8', '--config', str(ROOT / 'setup.cfg'), str(bad))
    assert 'F401' in result.stdout and 'Q000' in result.stdout and 'E501' in result.stdout


def test_the_layout_is_what_the_formatter_writes():
    result = _run('autopep8', '--diff', '--exit-code', '--recursive', *SOURCES)
    assert result.returncode == 0, f'run `make format`:\n{result.stdout}{result.stderr}'


def test_the_formatter_check_can_fail(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('def f( x ):\n  return x\n')
    result = _run('autopep8', '--diff', '--exit-code', '--global-config', str(ROOT / 'setup.cfg'),
                  str(bad))
    assert result.returncode == 2 and '+    return x' in result.stdout


def test_no_print_outside_cli():
    offenders = []
    for path in (ROOT / 'qvla_ros').rglob('*.py'):
        if 'cli' in path.relative_to(ROOT / 'qvla_ros').parts:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith('print('):
                offenders.append(f'{path.relative_to(ROOT)}:{lineno}')
    assert not offenders, f'print() outside qvla_ros/cli: {offenders}'


def _lint_imports(*args):
    return subprocess.run([str(Path(sys.executable).parent / 'lint-imports'), *args], cwd=ROOT,
                          capture_output=True, text=True)


def test_the_import_contracts_hold():
    result = _lint_imports()
    assert result.returncode == 0, f'import contracts broken:\n{result.stdout}{result.stderr}'
    assert 'Contracts: 3 kept, 0 broken.' in result.stdout


def test_the_import_contracts_can_fail(tmp_path):
    config = tmp_path / 'contracts.ini'  # a contract the code breaks: quant imports kernels
    config.write_text('[importlinter]\nroot_package = qvla_ros\n\n'
                      '[importlinter:contract:upside-down]\nname = upside down\ntype = layers\n'
                      'layers =\n    qvla_ros.kernels\n    qvla_ros.quant\n')
    result = _lint_imports('--config', str(config))
    assert result.returncode != 0 and 'BROKEN' in result.stdout


def test_mypy_on_the_typed_layers():
    result = _run('mypy')  # files and settings: setup.cfg [mypy]
    assert result.returncode == 0, f'mypy found problems:\n{result.stdout}{result.stderr}'
