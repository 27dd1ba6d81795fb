# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The README and docs/: generated blocks current, the site builds, the example runs."""

import importlib.util
from pathlib import Path
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location('qvla_docs', ROOT / 'scripts' / 'docs.py')
docs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(docs)


def test_every_generated_block_matches_the_code_and_bench_results():
    assert docs.main(['--check']) == 0, 'run `python scripts/docs.py`'


def test_a_stale_block_is_refilled_and_an_unknown_one_refused():
    stale = 'intro\n<!-- gen:faults -->\nold numbers\n<!-- /gen -->\nend\n'
    fresh = docs.render(stale, 'page.md')
    assert 'old numbers' not in fresh and 'Fault campaign' in fresh and fresh.endswith('end\n')
    with pytest.raises(SystemExit, match='unknown generated block'):
        docs.render('<!-- gen:nope -->\n<!-- /gen -->', 'page.md')


def test_the_site_builds_strictly(tmp_path):
    mkdocs = Path(sys.executable).parent / 'mkdocs'
    result = subprocess.run([str(mkdocs), 'build', '--strict', '--site-dir', str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / 'index.html').is_file() and (tmp_path / 'cli' / 'index.html').is_file()


def test_the_readme_is_short_with_two_commands_and_links_that_resolve():
    text = (ROOT / 'README.md').read_text()
    assert len(text.splitlines()) <= 300
    first = re.search(r'```sh\n(.*?)```', text, re.S).group(1)
    assert [line.split()[:2] for line in first.strip().splitlines()] == [
        ['make', 'demo'], ['make', 'test']]
    for target in re.findall(r'\]\(([^)#:]+)', text):
        assert (ROOT / target).exists(), f'README links to a missing {target}'


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's example, verbatim, on a tiny model and dataset at the paths it names."""
    from qvla_ros.core.types import Observation
    from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
    from qvla_ros.models.checkpoint import save_policy
    from qvla_ros.models.reference import build_reference, CONFIGS
    monkeypatch.chdir(tmp_path)
    policy = build_reference(CONFIGS['tiny'], seed=0)
    save_policy(policy, Path('checkpoints/tabletop-small'))
    rng = np.random.default_rng(0)
    with RolloutWriter(Path('calib'), DatasetInfo(7, 8, 10.0, ('front',))) as w:
        for e in range(3):
            w.add_episode({'front': rng.integers(0, 256, (6, 64, 64, 3), np.uint8)},
                          rng.normal(0, 1, (6, 8)).astype(np.float32),
                          rng.normal(0, 0.02, (6, 7)).astype(np.float32), np.arange(6),
                          'push the red block to the left', True, 'sim', 'expert')
    code = re.search(r'```python\n(.*?)```', (ROOT / 'README.md').read_text(), re.S).group(1)
    obs = Observation({'front': np.zeros((64, 64, 3), np.uint8)}, 'push the red block',
                      np.zeros(8, np.float32))
    scope = {'obs': obs}
    exec(compile(code, 'README.md', 'exec'), scope)  # noqa: S102 - our own documentation
    assert scope['chunk'].actions.shape == (8, 7)
    assert Path('tabletop-w4/plan.json').is_file() and scope['nbytes'] > 0


def test_every_python_block_of_the_docs_compiles():
    for page in sorted((ROOT / 'docs').rglob('*.md')):
        for i, code in enumerate(re.findall(r'```python\n(.*?)```', page.read_text(), re.S)):
            if '...' in code or '@register' in code:
                continue  # a sketch to fill in (docs/extending.md)
            compile(code, f'{page.name} block {i}', 'exec')
