# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Exact sensitivity on Ray: 1 against 2 workers, overhead per shard, a projection for 7B.

The same exact shards (rows of every layer at one width) run four ways, side by side in one
run: in this process on one thread and on all threads, and as Ray tasks of one CPU each on a
private local cluster limited to 1 and to 2 CPUs. It reports the speed-up of 2 workers over 1
(goal >= 1.7 on 2 cores) once the workers are started, and with their start-up (a worker's
first task imports torch and deserializes the model) counted too; Ray's overhead per shard
against the one-thread process; and checks
that every way gives the same scores bit for bit (the one-thread ways). The projection for an
OpenVLA-sized model on N GPUs takes the row count of ``allocation.json`` and the bf16 forward
time of ``gpu-model-*.json`` (a Llama-2-7B-shaped 600-token forward, measured on a GPU):
exact work is one forward of the calibration batch per row and width.

    python bench/sensitivity_scale.py     # writes bench/results/sensitivity_scale.json
"""

import argparse
import json
from pathlib import Path
import sys
import time

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import device_name, git_commit, RESULTS, write_json  # noqa: E402
from qvla_ros.models.checkpoint import load_policy  # noqa: E402
from qvla_ros.quant.calibration_batch import calibration_batch  # noqa: E402
from qvla_ros.quant.ray_exec import RayExecutor  # noqa: E402
from qvla_ros.quant.sensitivity import (make_shards, run_shards,  # noqa: E402
                                        SensitivityConfig)


def timed(fn):
    """Return (result, seconds) of ``fn()``."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def ray_run(policy, batch, cfg, shards, cpus: int, warm):
    """Return (scores, seconds, warm-up seconds) of the shards on ``cpus`` local workers.

    The warm-up shards (untimed in ``seconds``) start every worker: a worker's first task
    imports torch and the package and deserializes the model, a cost paid once per worker.
    """
    executor = RayExecutor('local', cpus_per_task=1, num_cpus=cpus).start()
    try:
        _, t_warm = timed(lambda: run_shards(policy, batch, cfg, warm, {}, executor=executor))
        scores, seconds = timed(lambda: run_shards(policy, batch, cfg, shards, {},
                                                   executor=executor))
        return scores, seconds, t_warm
    finally:
        executor.stop()


def projection(seconds_per_shard_overhead: float, samples: int) -> dict:
    """Return the projected exact pass of an OpenVLA-sized model on 1..512 GPUs."""
    alloc = json.loads((RESULTS / 'allocation.json').read_text())['openvla_sized']
    model = next(iter(sorted(RESULTS.glob('gpu-model-graph-*.json'))), None) \
        or next(iter(sorted(RESULTS.glob('gpu-model-*.json'))))
    forward = json.loads(model.read_text())
    key = 'graph_latency_ms' if 'graph_latency_ms' in forward['bf16'] else 'latency_ms'
    t_forward = forward['bf16'][key] / 1e3  # one 600-token sample (tokens as OFT's two cameras)
    widths, rows_per_shard = 4, 256
    work = alloc['rows'] * widths * samples * t_forward
    shards = alloc['rows'] * widths / rows_per_shard
    return {'rows': alloc['rows'], 'widths': widths, 'samples': samples,
            'forward_s_per_sample': t_forward, 'forward_source': model.name,
            'gpu_hours': {str(n): (work + shards * seconds_per_shard_overhead) / n / 3600
                          for n in (1, 8, 64, 512)}}


def main() -> int:
    """Run the four ways, compare, project, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default='checkpoints/tabletop-small')
    p.add_argument('--samples', type=int, default=2, help='synthetic calibration samples')
    p.add_argument('--rows', type=int, default=32, help='rows per shard')
    p.add_argument('--shards', type=int, default=24, help='shards measured (from every layer)')
    p.add_argument('--out', default=str(RESULTS / 'sensitivity_scale.json'))
    args = p.parse_args()
    policy = load_policy(args.model)
    batch = calibration_batch(policy, None, args.samples, args.samples, 1)
    cfg = SensitivityConfig(method='exact', bits=(4,), rows_per_pass=args.rows)
    sizes = {k: m.out_features for k, m in policy.quantizable_layers().items()}
    every = make_shards(sizes, cfg.bits, args.rows)
    shards = every[::max(1, len(every) // args.shards)][:args.shards]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    one, t_one = timed(lambda: run_shards(policy, batch, cfg, shards, {}))
    torch.set_num_threads(threads)
    _, t_all = timed(lambda: run_shards(policy, batch, cfg, shards, {}))
    warm = [s for s in every if s not in shards][:2]  # two other shards: one per worker
    ray1, t_ray1, w1 = ray_run(policy, batch, cfg, shards, 1, warm)
    ray2, t_ray2, w2 = ray_run(policy, batch, cfg, shards, 2, warm)
    equal = all(torch.equal(one[s], ray1[s]) and torch.equal(one[s], ray2[s]) for s in shards)
    overhead = (t_ray1 - t_one) / len(shards)
    result = {'device': device_name(), 'commit': git_commit(),
              'command': 'python ' + ' '.join(sys.argv), 'model': args.model,
              'shards': len(shards), 'rows_per_shard': args.rows, 'samples': args.samples,
              'threads': threads,
              'seconds': {'process_1_thread': t_one, f'process_{threads}_threads': t_all,
                          'ray_1_worker': t_ray1, 'ray_2_workers': t_ray2,
                          'ray_1_worker_warm_up': w1, 'ray_2_workers_warm_up': w2},
              'speedup_2_over_1_worker': t_ray1 / t_ray2,
              'speedup_with_warm_up': (t_ray1 + w1) / (t_ray2 + w2), 'goal_speedup': 1.7,
              'ray_overhead_s_per_shard': overhead, 'bit_equal': equal,
              'projection_7b': projection(max(overhead, 0.0), 16)}
    write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k != 'projection_7b'}, indent=1))
    return 0 if equal else 1


if __name__ == '__main__':
    sys.exit(main())
