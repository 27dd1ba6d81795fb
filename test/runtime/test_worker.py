# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The background worker that runs the policy's inference off the executor."""

import threading
import time

from qvla_ros.runtime.worker import Worker


def _gate_job():
    """Return (job, started, release, runs): a job that waits for ``release`` each run."""
    started, release, runs = threading.Event(), threading.Event(), []

    def job():
        started.set()
        release.wait(5)
        runs.append(1)
    return job, started, release, runs


def test_a_kick_while_running_is_dropped_not_queued():
    job, started, release, runs = _gate_job()
    worker = Worker(job, on_error=lambda err: None)
    try:
        assert worker.kick()
        assert started.wait(5) and worker.busy
        assert not worker.kick(), 'a kick while the job runs was accepted'
        release.set()
        assert worker.stop(5)
        assert runs == [1]
    finally:
        release.set()
        worker.stop(5)


def test_an_error_is_reported_and_the_thread_lives_on():
    errors, reported, done, calls = [], threading.Event(), threading.Event(), []

    def job():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('CUDA error')
        done.set()
    worker = Worker(job, on_error=lambda err: (errors.append(err), reported.set()))
    try:
        worker.kick()
        assert reported.wait(5) and [str(e) for e in errors] == ['CUDA error']
        end = time.monotonic() + 5  # the first run ends just after its error is reported
        while not worker.kick() and time.monotonic() < end:
            time.sleep(0.01)
        assert done.wait(5), 'the worker died with its first error'
    finally:
        worker.stop(5)


def test_stop_waits_for_the_running_job_and_refuses_kicks_after():
    job, started, release, runs = _gate_job()
    worker = Worker(job, on_error=lambda err: None)
    worker.kick()
    assert started.wait(5)
    assert not worker.stop(0.1), 'stop returned while the job still ran'
    release.set()
    assert worker.stop(5) and runs == [1]
    assert not worker.kick()
