# Copyright 2026 qvla_ros authors. Apache-2.0.
"""One background thread that runs a job on request, so a slow model never delays control.

The policy node's control timer must tick at ``control_hz`` while a plan is computed, and a
forward pass inside the executor would hold every tick back behind it. The job runs here
instead; torch releases the GIL inside its kernels, so the executor keeps ticking.
"""

import threading
from typing import Callable


class Worker:
    """Run ``job()`` on a thread of its own each time ``kick()`` finds it idle.

    A kick while the job runs is dropped, not queued: the next timer tick asks again with
    fresher inputs. ``on_error`` receives any exception the job lets out, and the thread
    goes on; without it the exception would end the thread silently.
    """

    def __init__(self, job: Callable[[], None], on_error: Callable[[BaseException], None],
                 name: str = 'worker'):
        self._job, self._on_error = job, on_error
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._busy = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def kick(self) -> bool:
        """Ask for one run of the job; return False when it is running or the worker stopped."""
        if self._stopping.is_set() or self._busy.locked():
            return False
        self._wake.set()
        return True

    @property
    def busy(self) -> bool:
        """True while the job runs."""
        return self._busy.locked()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop taking kicks and wait up to ``timeout`` s for a running job; return if done."""
        self._stopping.set()
        self._wake.set()
        if self._thread is threading.current_thread():
            return True  # the job itself asked to stop: it ends when it returns
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping.is_set():
                return
            with self._busy:
                try:
                    self._job()
                except Exception as err:  # noqa: B902 - reported; the thread must live on
                    self._on_error(err)
