# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Atomic files and folder swaps: a kill at any step leaves the old or the new folder."""

import os
import subprocess
import sys

import pytest

from qvla_ros.storage.atomic import (check_output, recover_folder, sibling, write_file,
                                     write_folder)

# Runs write_folder in a child that SIGKILLs itself right after its Nth os.replace: a real
# kill between the steps of the swap, not a simulated one.
KILL_AFTER_REPLACE = '''
import os, signal, sys
from qvla_ros.storage.atomic import write_folder
real, calls = os.replace, [0]
def replace(a, b):
    real(a, b)
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
write_folder(sys.argv[1], {'weights': lambda p: p.write_text('new')})
'''


def _leftovers(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f'.{out.name}.'))


def test_write_file_replaces_atomically_and_cleans_up_on_error(tmp_path):
    path = tmp_path / 'a' / 'x.json'
    write_file(path, lambda tmp: tmp.write_text('one'))
    assert path.read_text() == 'one'

    def broken(tmp):
        tmp.write_text('half')
        raise OSError(28, 'No space left on device')
    with pytest.raises(OSError, match='No space'):
        write_file(path, broken)
    assert path.read_text() == 'one' and sorted(os.listdir(path.parent)) == ['x.json']


def test_write_folder_refuses_to_replace_without_overwrite(tmp_path):
    out = tmp_path / 'ckpt'
    write_folder(out, {'weights': lambda p: p.write_text('old')})
    with pytest.raises(ValueError, match='exists; expected a new path'):
        write_folder(out, {'weights': lambda p: p.write_text('new')}, overwrite=False)
    write_folder(out, {'weights': lambda p: p.write_text('new')})
    assert (out / 'weights').read_text() == 'new' and _leftovers(out) == []


@pytest.mark.parametrize('kill_after,expected', [(1, 'new'), (2, 'new')],
                         ids=['between-the-renames', 'before-removing-the-old'])
def test_a_swap_killed_midway_is_finished_by_the_next_write(tmp_path, kill_after, expected):
    out = tmp_path / 'ckpt'
    write_folder(out, {'weights': lambda p: p.write_text('old')})
    child = subprocess.run([sys.executable, '-c', KILL_AFTER_REPLACE, str(out),
                            str(kill_after)])
    assert child.returncode == -9
    assert '.ckpt.old' in _leftovers(out)  # what the kill left behind
    if kill_after == 1:
        assert not out.exists()  # the moment at which a plain two-rename swap loses the output
    assert recover_folder(out)
    assert (out / 'weights').read_text() == expected
    assert _leftovers(out) == ['.ckpt.lock']  # the killed writer's, no longer locked
    write_folder(out, {'weights': lambda p: p.write_text('next')})  # later writes work
    assert (out / 'weights').read_text() == 'next' and _leftovers(out) == []


def test_an_unfinished_new_folder_is_rolled_back(tmp_path):
    out = tmp_path / 'ckpt'
    write_folder(out, {'weights': lambda p: p.write_text('old')})
    os.replace(out, sibling(out, 'old'))  # the swap had begun ...
    sibling(out, 'tmp').mkdir()  # ... but the new folder was never marked complete
    (sibling(out, 'tmp') / 'weights').write_text('ha')
    assert 'rolled' in recover_folder(out)
    assert (out / 'weights').read_text() == 'old' and _leftovers(out) == []


def test_check_output_refuses_to_overwrite_an_input(tmp_path):
    model = tmp_path / 'model'
    model.mkdir()
    for out in (model, tmp_path / 'model' / '..' / 'model', tmp_path):
        with pytest.raises(ValueError, match='would overwrite the input'):
            check_output(out, True, [str(model), None])
    link = tmp_path / 'link'
    link.symlink_to(model)
    with pytest.raises(ValueError, match='would overwrite the input'):
        check_output(link, True, [model])
    with pytest.raises(ValueError, match='pass --overwrite'):
        check_output(model, False, [])
    check_output(tmp_path / 'new', False, [model])
