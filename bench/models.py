# Copyright 2026 qvla_ros authors. Apache-2.0.
"""qvla-ref: parameter counts per config, CPU policy-step latency, training throughput.

    python bench/models.py      # writes bench/results/models.json (2 threads)
"""

import argparse
from pathlib import Path
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (device_name, git_commit, RESULTS, sample_cpu,  # noqa: E402
                          write_json)
from qvla_ros.core.types import Observation  # noqa: E402
from qvla_ros.models.reference import build_reference, CONFIGS, ReferenceVLA  # noqa: E402


def _latency(model, obs, bf16: bool, reps: int = 20) -> dict:
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            model.predict(obs)
    samples = sample_cpu(step, warmup=5, reps=reps)
    return {'median_ms': statistics.median(samples), 'p90_ms': float(np.percentile(samples, 90))}


def _train_throughput(steps: int = 20, batch: int = 16) -> float:
    from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
    from qvla_ros.models.recipes import TrainConfig
    from qvla_ros.models.training import train
    with tempfile.TemporaryDirectory() as tmp:
        w = RolloutWriter(Path(tmp) / 'd', DatasetInfo(7, 4, 10.0, ('front',)))
        rng = np.random.default_rng(0)
        for _ in range(4):
            w.add_episode({'front': rng.integers(0, 256, (20, 128, 128, 3), dtype=np.uint8)},
                          np.zeros((20, 4), np.float32),
                          rng.normal(0, 0.01, (20, 7)).astype(np.float32),
                          np.arange(20, dtype=np.int64), 'push the red block to the left',
                          True, 'sim', 'expert')
        cfg = TrainConfig(steps=steps, batch_size=batch, val_fraction=0.0, save_every=10**6,
                          val_every=10**6)
        t0 = time.perf_counter()
        train(Path(tmp) / 'd', CONFIGS['small'], Path(tmp) / 'ck', cfg)
        return steps * batch / (time.perf_counter() - t0)


def main(argv=None) -> int:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', default=str(RESULTS / 'models.json'))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {'device': device_name(), 'commit': git_commit(), 'threads': args.threads,
              'torch': torch.__version__, 'command': ' '.join(sys.argv), 'params': {}}
    for name, config in CONFIGS.items():
        with torch.device('meta'):
            model = ReferenceVLA(config)
        result['params'][name] = {
            'total': sum(p.numel() for p in model.parameters()),
            'quantizable': sum(m.weight.numel() for m in model.quantizable_layers().values()),
            'tokens': config.num_tokens}
    model = build_reference(CONFIGS['small'])
    obs = Observation({'front': np.zeros((128, 128, 3), np.uint8)},
                      'push the red block to the left', np.zeros(4, np.float32))
    result['small_step_fp32'] = _latency(model, obs, bf16=False)
    result['small_step_bf16'] = _latency(model, obs, bf16=True)
    result['train_samples_per_s_small_bf16'] = _train_throughput()
    write_json(Path(args.out), result)
    for name, p in result['params'].items():
        print(f'{name:16s} {p["total"] / 1e6:10.2f} M params ({p["quantizable"] / 1e6:.2f} M '
              f'quantizable), {p["tokens"]} tokens')
    print(f'small policy step: fp32 {result["small_step_fp32"]["median_ms"]:.1f} ms, bf16 '
          f'{result["small_step_bf16"]["median_ms"]:.1f} ms; training '
          f'{result["train_samples_per_s_small_bf16"]:.1f} samples/s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
