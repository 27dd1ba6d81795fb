# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Input-use study: how much each proprio input moves a qvla-ref policy's actions.

For every checkpoint, on ``--frames`` frames spread over a rollout dataset (the frames the
dataset recorded, so the images match the proprio), each proprio input k is moved by one of
the model's own standard deviations both ways, and the first action of the chunk is
compared (central difference, the executed de-normalized action):

    use_k = mean over frames of || a(x + s_k e_k) - a(x - s_k e_k) ||_2 / 2      (xyz+grip)

An input the policy ignores has use_k ~ 0, however large its true effect on the expert's
actions. It also records the L2 norm of each input's column of ``proprio_proj`` (the
standardized input's weight into the backbone) and splits ``use`` by instruction.

    python bench/input_use.py --dataset build/reference-metaworld/calib \\
        --checkpoints checkpoints/metaworld-small,build/reference-metaworld/finetune2-goal-matched

writes bench/results/input_use_<name>.json (``--name``, default the dataset folder's name).
"""

import argparse
from collections import defaultdict
from pathlib import Path
import sys
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.closed_loop import weights_digest  # noqa: E402
from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          write_json)
from qvla_ros.core.types import Observation  # noqa: E402
from qvla_ros.data.rollouts import read_info, spread_steps  # noqa: E402

ACTION_SLOTS = [0, 1, 2, 6]  # dx, dy, dz, gripper: the slots both suites act on


def frames(dataset: Path, count: int) -> List[Observation]:
    """Return ``count`` recorded observations spread over the dataset."""
    camera = read_info(dataset).cameras[0]
    return [Observation({camera: data[f'image.{camera}'][i]}, entry['instruction'],
                        data['proprio'][i])
            for entry, i, data in spread_steps(dataset, count)]


@torch.no_grad()
def first_actions(policy, batch: Dict[str, torch.Tensor], proprio: torch.Tensor) -> np.ndarray:
    """Return the de-normalized first action (R, A) of one frame under R proprio rows (R, P).

    ``batch`` is the frame's ``policy.make_batch``; its proprio is replaced by ``proprio``.
    """
    rows = proprio.shape[0]
    batch = {k: v.expand(rows, *v.shape[1:]) for k, v in batch.items()}
    batch['proprio'] = proprio
    normed = policy.action_tensor(batch)[:, 0].clamp(-1, 1).float().numpy()  # (R, A)
    return policy.normalizer.unnormalize(normed)


def input_use(policy, observations: List[Observation]) -> Dict:
    """Return per-input use (overall and by instruction) and proprio_proj column norms."""
    if not hasattr(policy, 'proprio_proj'):
        raise ValueError(f'input_use expects a qvla-ref policy (with proprio_proj), got '
                         f'{type(policy).__name__}')
    dim = policy.config.proprio_dim
    std = policy.proprio_std.float()  # (P,)
    shifts = torch.cat([torch.diag(std), -torch.diag(std)])  # (2P, P)
    per_frame, by_text = [], defaultdict(list)
    for obs in observations:
        batch = policy.make_batch(obs)
        base = batch['proprio'].float()  # (1, P)
        acts = first_actions(policy, batch, base + shifts)[:, ACTION_SLOTS]  # (2P, 4)
        use = np.linalg.norm(acts[:dim] - acts[dim:], axis=1) / 2.0  # (P,)
        per_frame.append(use)
        by_text[obs.instruction].append(use)
    columns = policy.proprio_proj.weight.detach().float().norm(dim=0)  # (P,)
    return {'use': np.mean(per_frame, axis=0).round(5).tolist(),
            'column_norm': columns.numpy().round(4).tolist(),
            'by_instruction': {t: np.mean(v, axis=0).round(5).tolist()
                               for t, v in sorted(by_text.items())}}


def main() -> None:
    """Measure every checkpoint on the same frames; write the JSON."""
    from qvla_ros.models.checkpoint import load_policy
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', required=True, help='rollout dataset folder')
    p.add_argument('--checkpoints', required=True, help='comma-separated qvla-ref checkpoints')
    p.add_argument('--frames', type=int, default=64)
    p.add_argument('--name', help='results name (default: the dataset folder name)')
    args = p.parse_args()
    dataset = Path(args.dataset)
    if not (dataset / 'dataset.json').is_file():
        raise SystemExit(f'--dataset expects a rollout dataset folder with dataset.json, got '
                         f'{args.dataset!r}')
    torch.set_num_threads(2)
    observations = frames(dataset, args.frames)
    rows = []
    for ckpt in [c for c in args.checkpoints.split(',') if c]:
        policy = load_policy(ckpt).float().eval()
        res = input_use(policy, observations)
        rows.append({'checkpoint': ckpt, 'checkpoint_sha256': weights_digest(ckpt), **res})
        print(f'{ckpt}: use {res["use"]} column norms {res["column_norm"]}', flush=True)
    meta = {'dataset': args.dataset, 'frames': len(observations), 'device': device_name(),
            'commit': git_commit(), 'command': command_line()}
    name = args.name or dataset.name
    write_json(RESULTS / f'input_use_{name}.json', {'meta': meta, 'rows': rows})


if __name__ == '__main__':
    main()
