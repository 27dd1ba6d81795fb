# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Exclusive advisory locks (fcntl) for artifacts that two processes might write at once.

The lock file holds the pid and purpose of its holder, so a refused writer can say who holds
it; the holder removes it on release. The kernel releases the lock when its holder dies, so a
killed writer leaves at most an unlocked file, never a stale lock.
"""

from contextlib import contextmanager
import fcntl
import os
from pathlib import Path
from typing import Iterator, Optional

from qvla_ros.storage.errors import LockedError


class FileLock:
    """An exclusive, non-blocking lock on ``path``, taken by ``acquire`` and ``release``."""

    def __init__(self, path: Path, purpose: str):
        self.path, self.purpose = Path(path), purpose
        self._fd: Optional[int] = None

    def acquire(self) -> 'FileLock':
        """Take the lock, or raise LockedError naming the process that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors='replace').strip() or 'unknown'
                os.close(fd)
                raise LockedError(f'cannot start {self.purpose}: {self.path} is held by '
                                  f'process {holder}; expected one writer at a time (wait for '
                                  'it to finish, or write elsewhere)') from None
            if self._same_file(fd):
                break
            os.close(fd)  # the holder we waited on removed the file: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()} ({self.purpose})\n'.encode(), 0)
        self._fd = fd
        return self

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove the lock file and release the lock (idempotent)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while held: a later locker opens a new file
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None


@contextmanager
def exclusive_lock(path: Path, purpose: str) -> Iterator[FileLock]:
    """Hold an exclusive lock on ``path`` for the ``with`` block."""
    lock = FileLock(path, purpose).acquire()
    try:
        yield lock
    finally:
        lock.release()
