# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Atomic writes of files and whole folders, with recovery of a swap a kill interrupted.

A file is written to a hidden sibling ``.NAME.tmp``, flushed to disk and renamed over NAME. A
folder is written into ``.NAME.tmp``; a ``.NAME.ready`` marker records that it is complete;
then an existing NAME moves to ``.NAME.old``, the new folder takes its place and the old one
is deleted. A kill can stop that sequence between any two steps; ``recover_folder`` (run by
every folder write, and by loaders that find NAME missing) then finishes the swap when the new
folder was complete, or rolls back to the old one. One writer at a time holds ``.NAME.lock``.
"""

import json
import os
from pathlib import Path
import shutil
from typing import Any, Callable, Mapping

from qvla_ros.storage.errors import ArtifactError
from qvla_ros.storage.lock import exclusive_lock

Writer = Callable[[Path], Any]  # writes the file or folder at the path it is given


def sibling(path: Path, suffix: str) -> Path:
    """Return the hidden sibling ``.NAME.<suffix>`` of ``path``."""
    path = Path(path)
    return path.with_name(f'.{path.name}.{suffix}')


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, writer: Writer) -> None:
    """Write ``path`` through ``writer(tmp)`` into a temp sibling, then rename it in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(path, 'tmp')
    try:
        writer(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    write_file(path, lambda tmp: Path(tmp).write_text(text))


def write_json(path: Path, data) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=1) + '\n')


def recover_folder(out: Path) -> str:
    """Finish or roll back a folder swap that a kill interrupted; return what was done.

    Call with the folder's lock held (``write_folder`` does).
    """
    out = Path(out)
    tmp, ready, old = sibling(out, 'tmp'), sibling(out, 'ready'), sibling(out, 'old')
    done = ''
    if old.exists():
        if out.exists():
            done = f'removed {old} left by a finished swap'
        elif tmp.is_dir() and ready.exists():
            os.replace(tmp, out)
            done = f'finished an interrupted write of {out}'
        else:
            os.replace(old, out)
            done = f'rolled {out} back to its previous content after an interrupted write'
        shutil.rmtree(old, ignore_errors=True)
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
        done = done or f'removed the unfinished {tmp}'
    ready.unlink(missing_ok=True)
    return done


def write_folder(out: Path, files: Mapping[str, Writer], overwrite: bool = True) -> None:
    """Write folder ``out`` from ``{name: writer(path)}``; it appears whole or not at all.

    An existing ``out`` is replaced only with ``overwrite`` (else ArtifactError).
    """
    def fill(tmp: Path) -> None:
        for name, writer in files.items():
            writer(tmp / name)
    fill_folder(out, fill, overwrite)


def fill_folder(out: Path, fill: Callable[[Path], Any], overwrite: bool = False) -> Any:
    """Build folder ``out`` by ``fill(new_folder)`` and swap it in; return what fill returned.

    The folder appears whole or not at all; an existing ``out`` is replaced only with
    ``overwrite`` (else ArtifactError). One writer at a time: the lock is held throughout.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(sibling(out, 'lock'), f'writing {out}'):
        recover_folder(out)
        if out.exists() and not overwrite:
            raise ArtifactError(f'{out} exists; expected a new path (or pass --overwrite)')
        tmp, ready, old = sibling(out, 'tmp'), sibling(out, 'ready'), sibling(out, 'old')
        tmp.mkdir()
        try:
            result = fill(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        ready.touch()
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        ready.unlink()
    return result


def check_output(out: Path, overwrite: bool, sources=()) -> None:
    """Refuse an output that would destroy an input, or overwrite without ``overwrite``.

    ``sources`` are paths the command reads: ``out`` may be none of them nor contain one
    (resolved, so links and ``..`` do not hide it), since replacing ``out`` deletes it.
    """
    target = Path(out).resolve()
    for src in sources:
        if src is None:
            continue
        source = Path(src).resolve()
        if source == target or source.is_relative_to(target):
            raise ArtifactError(f'--out {out} would overwrite the input {src}; expected a '
                                'path outside it')
    if Path(out).exists() and not overwrite:
        raise ArtifactError(f'{out} exists; expected a new path (or pass --overwrite to '
                            'replace it)')
