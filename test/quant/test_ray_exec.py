# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Exact shards as Ray tasks on a private local cluster: loopback only, same scores, retries."""

from contextlib import contextmanager
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

ray = pytest.importorskip('ray')

from qvla_ros.models.checkpoint import load_policy  # noqa: E402
from qvla_ros.quant.calibration_batch import calibration_batch  # noqa: E402
from qvla_ros.quant.ray_exec import RayExecutor  # noqa: E402
from qvla_ros.quant.sensitivity import (exact_sensitivity, hybrid_sensitivity,  # noqa: E402
                                        SensitivityConfig)

CFG = SensitivityConfig(method='exact', bits=(0, 4))  # the command's defaults


@pytest.fixture(scope='module')
def cluster():
    executor = RayExecutor('local', num_cpus=2).start()
    yield executor
    executor.stop()


@contextmanager
def one_thread():
    """Run as a task with one CPU does: bit-equal sums need equal thread counts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def tiny():
    """(policy, batch, serial exact scores): the batch ``qvla sensitivity --synthetic 2`` uses."""
    policy = load_policy('ref-tiny:0')
    batch = calibration_batch(policy, None, 2, 64, 5)
    with one_thread():
        return policy, batch, exact_sensitivity(policy, batch, CFG)


def _listeners():
    """Return {(local address, pid)} of every listening TCP socket, from /proc."""
    inodes = {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            for fd in os.listdir(f'/proc/{pid}/fd'):
                link = os.readlink(f'/proc/{pid}/fd/{fd}')
                if link.startswith('socket:['):
                    inodes[link[8:-1]] = int(pid)
        except OSError:
            continue
    out = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == '0A' and parts[9] in inodes:  # LISTEN
                out.add((parts[1].split(':')[0], inodes[parts[9]]))
    return out


def _cmdline(pid):
    try:
        return Path(f'/proc/{pid}/cmdline').read_bytes().replace(b'\0', b' ').decode()
    except OSError:
        return ''


LOOPBACK = {'0100007F', '0000000000000000FFFF00000100007F', '00000000000000000000000001000000'}


def test_every_ray_listener_is_on_loopback(cluster):
    ours = [(addr, pid) for addr, pid in _listeners()
            if 'ray' in _cmdline(pid) or 'gcs_server' in _cmdline(pid) or pid == os.getpid()]
    assert len(ours) >= 3, ours  # gcs, raylet, workers ...
    outside = [(addr, _cmdline(pid)[:60]) for addr, pid in ours if addr not in LOOPBACK]
    assert not outside, f'Ray listens beyond 127.0.0.1: {outside}'


def test_ray_gives_the_single_process_scores_bit_for_bit(cluster, tiny):
    policy, batch, serial = tiny
    remote = exact_sensitivity(policy, batch, CFG, executor=cluster)
    assert all(torch.equal(serial[k], remote[k]) for k in serial)
    cfg = SensitivityConfig(method='hybrid', bits=(0, 4), rows_per_pass=8, refine_fraction=0.1)
    with one_thread():
        a = hybrid_sensitivity(policy, batch, cfg)
    b = hybrid_sensitivity(policy, batch, cfg, executor=cluster)
    assert all(torch.equal(a[0][k], b[0][k]) and torch.equal(a[1][k], b[1][k]) for k in a[0])


def test_a_worker_killed_mid_task_is_retried_and_changes_nothing(cluster, tiny):
    policy, batch, serial = tiny
    killed = []

    def kill_a_busy_worker():
        end = time.monotonic() + 60
        while not killed and time.monotonic() < end:
            for pid in filter(str.isdigit, os.listdir('/proc')):
                if _cmdline(pid).startswith('ray::_shard_task'):
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            time.sleep(0.01)
    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    remote = exact_sensitivity(policy, batch, CFG, executor=cluster)
    killer.join()
    assert killed, 'no worker was caught running a shard'
    assert all(torch.equal(serial[k], remote[k]) for k in serial)


def test_a_killed_driver_resumes_without_redoing_finished_shards(tmp_path, tiny):
    exe = str(Path(sys.executable).parent / 'qvla')
    args = [exe, 'sensitivity', '--model', 'ref-tiny:0', '--synthetic', '2', '--method',
            'exact', '--bits', '0,4', '--ray', 'local', '--out', str(tmp_path / 's.safetensors')]
    shards = tmp_path / 's.safetensors.shards'
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    end = time.monotonic() + 240
    while len(list(shards.glob('shard-*'))) < 3 and time.monotonic() < end:
        time.sleep(0.2)
    first.kill()
    first.wait()
    kept = len(list(shards.glob('shard-*')))
    assert kept >= 3, 'no shard was filed before the kill'
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f'resuming: {kept} shards already measured' in rerun.stdout
    from safetensors.torch import load_file
    merged, serial = load_file(str(tmp_path / 's.safetensors')), tiny[2]
    assert merged.keys() == serial.keys() and all(torch.equal(merged[k], serial[k])
                                                  for k in serial)
