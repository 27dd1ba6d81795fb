# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Where low-bit activations hurt, and how much a Hadamard rotation and clipping give back.

Offline, on ``--frames`` recorded frames of a rollout dataset: the FP policy against the same
policy with only its quantized layers' inputs changed (weights FP), for every activation
width, clip ratio and rotation, and with only its weights at 4 bits (RTN), rotated or not.
Nothing is fitted to the frames, so they need not be held out. The deviation is the mean
squared difference of the whole normalized action chunk (the closed-loop table's
``mean_deviation`` is the same quantity on the executed actions). It also times the policy
step with each rotation alone (activations FP) against FP: the cost of the online transforms
in plain torch on the CPU (``quarot`` folds the residual stream's and runs fewer online).

    python bench/activations.py --checkpoint checkpoints/tabletop-small \\
        --dataset build/reference-tabletop/calib

writes bench/results/activations_<suite>.json.
"""

import argparse
from pathlib import Path
import sys

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.closed_loop import weights_digest  # noqa: E402
from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          time_cpu, write_json)
from qvla_ros.models.checkpoint import load_policy  # noqa: E402
from qvla_ros.quant.activation import ActSpec  # noqa: E402
from qvla_ros.quant.calibration_batch import calibration_batch  # noqa: E402
from qvla_ros.quant.methods import apply_method, Calibration, MethodConfig  # noqa: E402
from qvla_ros.quant.prepared import prepare_  # noqa: E402

ROTATIONS = (None, 'hadamard', 'quarot')


@torch.no_grad()
def deviation(policy, batch, reference: torch.Tensor) -> float:
    """Return the mean squared action difference (normalized units) from ``reference``."""
    return float((policy.action_tensor(batch) - reference).pow(2).mean())


def step_ms(policy, batch, repeats: int) -> float:
    """Return the median milliseconds of one single-frame policy step."""
    one = {k: v[:1] for k, v in batch.items()}
    with torch.no_grad():
        return time_cpu(lambda: policy.action_tensor(one), warmup=1, reps=repeats)


def main() -> int:
    """Measure every cell; write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--dataset', required=True, help='rollout dataset to take frames from')
    p.add_argument('--suite', default='', help='results name (default: the model folder name)')
    p.add_argument('--frames', type=int, default=32)
    p.add_argument('--clips', default='1.0,0.9,0.8')
    p.add_argument('--repeats', type=int, default=20, help='timed steps per variant')
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads (one keeps the side-by-side timing steady on a busy '
                   'machine)')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fp = load_policy(args.checkpoint)
    batch = calibration_batch(fp, args.dataset, 0, args.frames, 1)
    with torch.no_grad():
        reference = fp.action_tensor(batch)
    rows = []
    for bits in (4, 8):
        for clip in [float(c) for c in args.clips.split(',')]:
            for rotation in ROTATIONS:
                policy = load_policy(args.checkpoint)
                prepare_(policy, ActSpec(bits, clip, rotation))
                rows.append({'weights': 16, 'act_bits': bits, 'clip': clip,
                             'rotation': rotation,
                             'deviation': deviation(policy, batch, reference)})
    for rotation in ROTATIONS:  # weights alone at 4 bits (RTN needs no data)
        policy = load_policy(args.checkpoint)
        apply_method(policy, Calibration({}), MethodConfig('rtn', 4.0, rotation=rotation))
        rows.append({'weights': 4, 'act_bits': 16, 'clip': 1.0, 'rotation': rotation,
                     'deviation': deviation(policy, batch, reference)})
    timing = {'fp_ms': step_ms(fp, batch, args.repeats), 'threads': torch.get_num_threads()}
    for rotation in ROTATIONS[1:]:  # the online transforms alone (activations FP)
        rotated = load_policy(args.checkpoint)
        prepare_(rotated, ActSpec(16, rotation=rotation))
        timing[f'{rotation}_ms'] = step_ms(rotated, batch, args.repeats)
    name = args.suite or Path(args.checkpoint).name.split('-')[0]
    write_json(RESULTS / f'activations_{name}.json', {
        'meta': {'command': command_line(), 'checkpoint': args.checkpoint,
                 'checkpoint_sha256': weights_digest(args.checkpoint),
                 'dataset': args.dataset, 'frames': args.frames, 'device': device_name(),
                 'commit': git_commit()},
        'rows': rows, 'timing': timing})
    for r in rows:
        print(f'W{r["weights"]}A{r["act_bits"]} clip {r["clip"]:g} {r["rotation"] or "-"}: '
              f'{r["deviation"]:.6f}')
    print('step: ' + ', '.join(f'{k[:-3]} {v:.1f} ms' for k, v in timing.items()
                               if k.endswith('_ms')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
