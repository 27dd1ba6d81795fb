# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Chunk schedule study: closed-loop success against actions executed per chunk (dev seeds).

Every policy predicts an 8-step chunk; the evaluator executes the first K actions, then
replans (``qvla_ros.sim.evaluate``). This runs one checkpoint at several K on the same dev
seeds (disjoint from the evaluation seeds 100000..) and records success, by task, and policy
latency; it is how ``EXECUTE_STEPS`` was chosen.

    python bench/schedule.py --suite tabletop --checkpoint checkpoints/tabletop-small \\
        --steps 1,2,3,4,5,6,8 --seeds 90000:90050

writes bench/results/schedule_<suite>.json.
"""

import argparse
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.closed_loop import weights_digest  # noqa: E402
from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          write_json)
from qvla_ros.sim.evaluate import EvalConfig, evaluate, seed_range  # noqa: E402


def parse_seeds(text: str) -> range:
    """Return the seeds of 'A:B' (A < B); a usage error (SystemExit) names the form."""
    try:
        return seed_range(text)
    except ValueError as err:
        raise SystemExit(str(err)) from None


def main() -> None:
    """Evaluate the checkpoint at every K; write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--suite', default='tabletop', choices=['tabletop', 'metaworld'])
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--steps', default='1,2,3,4,5,6,8', help='actions executed per chunk')
    p.add_argument('--seeds', default='90000:90050', help='A:B, dev seeds')
    p.add_argument('--workers', type=int, default=2)
    args = p.parse_args()
    steps = [int(k) for k in args.steps.split(',') if k]
    seeds = tuple(parse_seeds(args.seeds))
    rows = []
    for k in steps:
        res = evaluate(EvalConfig(args.checkpoint, args.suite, seeds, k), workers=args.workers)
        rows.append({'execute_steps': k, **{key: res[key] for key in (
            'episodes', 'successes', 'success_rate', 'wilson95', 'by_task',
            'policy_latency_ms')}})
        print(f'execute {k}: {res["successes"]}/{res["episodes"]} {res["by_task"]}', flush=True)
    meta = {'suite': args.suite, 'checkpoint': args.checkpoint,
            'checkpoint_sha256': weights_digest(args.checkpoint), 'seeds': args.seeds,
            'device': device_name(), 'commit': git_commit(), 'command': command_line()}
    write_json(RESULTS / f'schedule_{args.suite}.json', {'meta': meta, 'rows': rows})


if __name__ == '__main__':
    main()
