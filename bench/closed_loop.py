# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Closed-loop comparison: QVLA against baselines at equal real packed bytes, in simulation.

Every cell quantizes the FP reference with one method at one budget through the packed
kernels (``qvla_ros.quant.methods``), saves it, and runs ``qvla_ros.sim.evaluate`` on seeds
disjoint from training and calibration, with the FP policy queried on the same observations
for the action deviation. Cells are cached in the results JSON as they finish, so an
interrupted run resumes; ``--fresh`` starts over. The file records the sha256 of the FP
weights and the chunk schedule (``--execute-steps``), and a run with another checkpoint or
schedule refuses to add cells to it.

    python bench/closed_loop.py --suite tabletop \\
        --checkpoint checkpoints/tabletop-small --calibration build/calib-tabletop

writes bench/results/closed_loop_<suite>.json, .md (the table) and .png (success vs bits).
"""

import argparse
from collections import Counter
import hashlib
import json
from pathlib import Path
import sys
import tempfile
import time


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          write_json)
from qvla_ros.cli.quant_cmds import clip_option, CLIP_SEARCH  # noqa: E402
from qvla_ros.models.checkpoint import load_policy, save_quantized  # noqa: E402
from qvla_ros.quant.calibration_batch import calibration_batch  # noqa: E402
from qvla_ros.quant.methods import (apply_method, Calibration, MethodConfig,  # noqa: E402
                                    REGISTRY)
from qvla_ros.runtime.chunking import checkpoint_schedule  # noqa: E402
from qvla_ros.sim.evaluate import EvalConfig, evaluate  # noqa: E402
from qvla_ros.storage.atomic import write_file, write_text  # noqa: E402

HEADLINE = {('qvla', 4.0), ('qvla', 3.0), ('qvla-gptq', 4.0), ('qvla-gptq', 3.0)}
ALLOCATING = ('qvla', 'qvla-gptq', 'qvla-exact', 'layerwise')  # plans the prune cap shapes
SAMPLING = 'spread'  # calibration steps spread over the dataset (data.rollouts.spread_steps)
# W4A4 cells of each method: unrotated, every input rotated online, and QuaRot's folded
# residual rotation (SmoothQuant is the unrotated A4 baseline)
ROTATED = {m: (None, 'hadamard', 'quarot') for m in ('rtn', 'gptq', 'qvla', 'qvla-gptq')}
A4_CLIP = 0.9  # QuaRot's activation clip ratio at 4 bits
FP_INPUTS = 'calibrated on FP inputs'


def _add_tag(row: dict, tag: str) -> dict:
    return {**row, 'tag': ', '.join(t for t in (row.get('tag', ''), tag) if t)}


def retag_stale(row: dict, cap: float) -> dict:
    """Return ``row``, tagged when the code that made it differs from today's in its results.

    'prune<=X': an allocating method made it under another prune cap; FP_INPUTS: a cell with
    quantized activations, of a method that reads calibration data, made before calibration
    ran with the activations quantized (rows without ``act_clip``). Such cached cells stay in
    the table as records, and their cells run again.
    """
    old = row.get('max_prune_fraction')
    if row['method'] in ALLOCATING and 'prune<=' not in row.get('tag', '') and old != cap:
        row = _add_tag(row, f'prune<={old:g}')
    if (row.get('act_bits') and 'act_clip' not in row and FP_INPUTS not in row.get('tag', '')
            and REGISTRY[row['method']].needs_data):
        row = _add_tag(row, FP_INPUTS)
    return row


def weights_digest(checkpoint: str) -> str:
    """Return 12 hex digits of the sha256 of a checkpoint folder's weights ('' if none)."""
    path = Path(checkpoint) / 'model.safetensors'
    if not path.is_file():
        return ''
    h = hashlib.sha256()
    with path.open('rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()[:12]


def check_same_weights(old_meta: dict, digest: str, out: Path) -> None:
    """Refuse to add cells of one FP checkpoint to a file that holds another's."""
    old = old_meta.get('checkpoint_sha256')
    if old and digest and old != digest:
        raise SystemExit(f'{out} holds cells of checkpoint weights {old}; this checkpoint is '
                         f'{digest}. Pass --fresh to replace them or --name NAME to write '
                         'another file')


def recorded_schedule(meta: dict) -> int:
    """Return the actions per chunk a results file's cells executed."""
    return meta['execute_steps']


def check_same_schedule(old_meta: dict, execute_steps: int, out: Path) -> None:
    """Refuse to add cells run with one chunk schedule to a file that holds another's."""
    if not old_meta:
        return
    old = recorded_schedule(old_meta)
    if old != execute_steps:
        raise SystemExit(f'{out} holds cells that executed {old} actions per chunk; this run '
                         f'executes {execute_steps}. Pass --fresh to replace them or --name '
                         'NAME to write another file')


def cell_key(method: str, bits, act, tag: str = '') -> str:
    """Return the cache key of one cell."""
    return f'{method}|{bits}|a{act or 16}|{tag}'


def searches_clip(args, act) -> bool:
    """Return True if a cell at activation width ``act`` searches its layers' clip ratios."""
    return act == 4 and args.a4_clip == CLIP_SEARCH


def run_cell(args, calib: Calibration, fp_params: int, method: str, bits: float,
             act=None, episodes: int = 50, refine: float = None, tag: str = '',
             rotation: str = None) -> dict:
    """Quantize, save and evaluate one cell; return its row.

    A4 cells clip each token's grid at ``args.a4_clip`` of its absmax, or search each layer's
    ratio from A4_CLIP on ('search'); A8 cells do not clip.
    """
    policy = load_policy(args.checkpoint)
    search = searches_clip(args, act)
    cfg = MethodConfig(method, bits, act, rotation=rotation, clip_search=search,
                       act_clip=A4_CLIP if search else args.a4_clip if act == 4 else 1.0,
                       refine_fraction=refine if refine is not None else args.refine_fraction,
                       max_prune_fraction=args.max_prune_fraction)
    t0 = time.perf_counter()
    plan, act_spec, packed = apply_method(policy, calib, cfg)
    seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix='qvla-cl-') as tmp:
        save_quantized(policy, plan, Path(tmp) / 'q', act_spec)
        res = evaluate(EvalConfig(str(Path(tmp) / 'q'), args.suite, tuple(
            range(args.seed0, args.seed0 + episodes)), args.execute_steps, args.checkpoint),
            workers=args.workers)
    res.pop('per_episode')
    return {'method': method, 'target_bits': bits, 'act_bits': act, 'tag': tag,
            'rotation': rotation, 'act_clip': cfg.act_clip, 'clip_search': search,
            'refine_fraction': cfg.refine_fraction, 'plan_id': plan.plan_id,
            'max_prune_fraction': cfg.max_prune_fraction, 'calibration_sampling': SAMPLING,
            'plan_bits_per_param': plan.achieved_bits(), 'packed_bytes': packed,
            'real_bits_per_param': 8.0 * packed / fp_params, 'quantize_s': seconds,
            'histogram': plan.histogram(), 'device': device_name(), **{k: res[k] for k in (
                'episodes', 'successes', 'success_rate', 'wilson95', 'mean_deviation',
                'final_step_deviation', 'policy_latency_ms', 'by_task')}}


def fp_row(args, episodes: int) -> dict:
    """Evaluate the FP reference; ``solved_seeds`` lists the seeds it solved."""
    res = evaluate(EvalConfig(args.checkpoint, args.suite, tuple(
        range(args.seed0, args.seed0 + episodes)), args.execute_steps), workers=args.workers)
    solved = sorted(e['seed'] for e in res['per_episode'] if e['success'])
    return {'method': 'fp', 'target_bits': 16, 'act_bits': None, 'tag': '',
            'real_bits_per_param': 16.0, 'seed0': args.seed0, 'solved_seeds': solved,
            'device': device_name(), 'commit': git_commit(), **{k: res[k] for k in (
                'episodes', 'successes', 'success_rate', 'wilson95', 'policy_latency_ms',
                'by_task')}}


def refreshed_fp(old: dict, new: dict, old_meta: dict, seed0: int, out: Path) -> dict:
    """Return the re-evaluated FP row ``new``, recording what ``old`` measured.

    Refused when the file's cells started from another seed than ``seed0``: the per-seed
    comparison would then pair different episodes.
    """
    cells_seed0 = (old_meta.get('eval_seeds') or [None])[0]
    if cells_seed0 is not None and cells_seed0 != seed0:
        raise SystemExit(f'{out} holds cells evaluated from seed {cells_seed0}; refreshing FP '
                         f'from seed {seed0} would compare other episodes. Pass --seed0 '
                         f'{cells_seed0}')
    if not old:
        return new
    return {**new, 'previous': {k: old.get(k) for k in (
        'episodes', 'successes', 'device', 'commit')}}


def seed_span(seed0: int, rows, fp: dict) -> list:
    """Return [first, last + 1] of the seeds the file's rows (or, with none, FP) ran on."""
    return [seed0, seed0 + max([r['episodes'] for r in rows] or [fp['episodes']])]


def fp_successes_on(fp: dict, episodes: int) -> float:
    """Return FP's successes on a cell's seeds (its first ``episodes``).

    A cell with more episodes than FP ran gets FP's rate scaled to its episodes.
    """
    if episodes > fp['episodes']:
        return fp['success_rate'] * episodes
    return sum(1 for s in fp['solved_seeds'] if s < fp['seed0'] + episodes)


def percent_of_fp(row: dict, fp: dict) -> float:
    """Return the row's successes as a percentage of FP's on the same seeds (0 if FP has none)."""
    ref = fp_successes_on(fp, row['episodes'])
    return 100.0 * row['successes'] / ref if ref else 0.0


def rotations(args, method: str, act: int) -> tuple:
    """Return the rotations of a method's A``act`` cells: W4A4 rotates, if asked, W4A8 not."""
    if act != 4 or method not in ROTATED:
        return (None,)
    return tuple(r for r in ROTATED[method] if (r or 'none') in args.rotations)


def cells(args):
    """Yield the cells in run order.

    Each as (method, bits, act, episodes, refine, tag, calibration samples, rotation).
    """
    for bits in args.budgets:
        for method in args.methods:
            n = args.headline_episodes if (method, bits) in HEADLINE else args.episodes
            samples = args.exact_samples if method == 'qvla-exact' else args.samples
            yield method, bits, None, n, None, '', samples, None
    if args.w4a8:
        for method in ('qvla', 'rtn', 'smoothquant'):
            yield method, 4.0, 8, args.episodes, None, 'w4a8', args.samples, None
    for act in args.activations:  # W4A4 (and W4A8) with and without rotation
        for method in args.act_methods:
            for rotation in rotations(args, method, act):
                search = 'clip search' if searches_clip(args, act) else ''
                tag = ', '.join(t for t in (rotation, search) if t)
                yield method, 4.0, act, args.act_episodes, None, tag, args.samples, rotation
    if args.ablation:  # around the W3 qvla cell (args.samples, args.refine_fraction)
        for refine in args.ablation_refine:
            yield ('qvla', 3.0, None, args.episodes, refine, f'refine={refine}', args.samples,
                   None)
        for samples in args.ablation_samples:
            yield 'qvla', 3.0, None, args.episodes, None, f'samples={samples}', samples, None


def markdown(rows, fp) -> str:
    """Return the markdown table of the rows."""
    out = ['| method | budget | real bits/param | success | Wilson 95 % | FP on these seeds | '
           '% of FP | mean / final dev. | latency ms |', '|---|---|---|---|---|---|---|---|---|']
    ordered = sorted(rows, key=lambda r: (bool(r.get('tag')), -r['target_bits'],
                                          r.get('act_bits') or 0))  # stable: run order
    counts = Counter(r.get('calibration_samples') for r in rows)
    usual = counts.most_common(1)[0][0] if counts else None
    for r in [fp] + ordered:
        lo, hi = r['wilson95']
        rel = f'{fp_successes_on(fp, r["episodes"]):.0f}/{r["episodes"]} | ' \
              f'{percent_of_fp(r, fp):.0f} %'
        dev = (f'{r["mean_deviation"]:.4f} / {r["final_step_deviation"]:.4f}'
               if r.get('mean_deviation') is not None else '-')
        name = r['method'] + (f' ({r["tag"]})' if r.get('tag') else '')
        if r.get('calibration_samples', usual) != usual and 'samples=' not in r.get('tag', ''):
            name += f' ({r["calibration_samples"]} samples)'  # e.g. qvla-exact
        budget = 'fp' if r['method'] == 'fp' else f'W{r["target_bits"]:g}' + (
            f'A{r["act_bits"]}' if r.get('act_bits') else '')
        out.append(f'| {name} | {budget} | {r["real_bits_per_param"]:.2f} | '
                   f'{r["successes"]}/{r["episodes"]} | {100 * lo:.0f}-{100 * hi:.0f} % | '
                   f'{rel} | {dev} | {r["policy_latency_ms"]:.1f} |')
    return '\n'.join(out) + '\n'


def write_report(out: Path, meta: dict, fp: dict, rows: list) -> str:
    """Write the results JSON, its markdown table and plot; return the table."""
    write_json(out, {'meta': meta, 'fp': fp, 'rows': rows})
    table = markdown(rows, fp)
    write_text(out.with_suffix('.md'), table)
    plot(rows, fp, out.with_suffix('.png'))
    return table


def plot(rows, fp, path: Path) -> None:
    """Write success rate vs real bits/param per method, with Wilson intervals."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plain = [r for r in rows if not r.get('tag') and not r.get('act_bits')]  # weights only
    for method in sorted({r['method'] for r in plain}):
        pts = sorted((r['real_bits_per_param'], r['success_rate'], r['wilson95'])
                     for r in plain if r['method'] == method)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        err = [[y - p[2][0] for y, p in zip(ys, pts)], [p[2][1] - y for y, p in zip(ys, pts)]]
        ax.errorbar(xs, ys, yerr=err, marker='o', capsize=3, label=method)
    ax.axhline(fp['success_rate'], color='k', ls='--', label='fp')
    ax.set_xlabel('real packed bits per quantized parameter')
    ax.set_ylabel('success rate')
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    write_file(path, lambda tmp: fig.savefig(tmp, format='png', dpi=120, bbox_inches='tight'))


def main() -> None:
    """Run the comparison; cache cells; write JSON, markdown and PNG."""
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--suite', default='tabletop', choices=['tabletop', 'metaworld'])
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--calibration', required=True, help='rollout dataset (expert + FP)')
    p.add_argument('--samples', type=int, default=32, help='calibration samples')
    p.add_argument('--stride', type=int, default=3)
    p.add_argument('--episodes', type=int, default=50)
    p.add_argument('--headline-episodes', type=int, default=100)
    p.add_argument('--seed0', type=int, default=100000)
    p.add_argument('--execute-steps', type=int,
                   help='actions run from each chunk before replanning (default: the FP '
                   "checkpoint's recorded schedule)")
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--budgets', default='8,4,3,2.5')
    p.add_argument('--methods',
                   default='qvla,qvla-gptq,qvla-release,layerwise,rtn,smoothquant,awq,gptq')
    p.add_argument('--refine-fraction', type=float, default=0.02)
    p.add_argument('--exact-samples', type=int, default=2,
                   help='calibration samples of qvla-exact (exact sensitivity of every row)')
    p.add_argument('--shards', default='build/closed_loop_shards',
                   help='where exact shards are kept as they finish (a rerun resumes), in '
                   'SHARDS/<suite>/<FP weights sha256>/samples-<n>')
    p.add_argument('--ray', metavar='local|ADDRESS', help='run exact shards as Ray tasks')
    p.add_argument('--max-prune-fraction', type=float,
                   default=MethodConfig('qvla', 4.0).max_prune_fraction,
                   help='per-layer prune cap of the allocating methods')
    p.add_argument('--w4a8', action='store_true')
    p.add_argument('--activations', default='',
                   help='activation widths of the input-quantized cells (comma list of 4, 8): '
                   'W4A4 unrotated, hadamard and quarot rotated, W4A8 unrotated')
    p.add_argument('--act-methods', default='rtn,smoothquant,gptq,qvla,qvla-gptq',
                   help='methods of the --activations cells')
    p.add_argument('--rotations', default='none,hadamard,quarot',
                   help='rotations of the W4A4 cells of methods that rotate (comma list)')
    p.add_argument('--act-episodes', type=int, default=100,
                   help='episodes of each --activations cell')
    p.add_argument('--a4-clip', type=clip_option, default=A4_CLIP,
                   help="A4 cells: fraction of a token's absmax its grid spans, or 'search': "
                   "each layer's chosen on the calibration data (the cells are tagged)")
    p.add_argument('--ablation', action='store_true',
                   help='add W3 qvla cells at other refine fractions and calibration sizes')
    p.add_argument('--ablation-refine', default='0.0,0.03',
                   help='refine fractions of the ablation (comma list)')
    p.add_argument('--ablation-samples', default='4,32',
                   help='calibration sample counts of the ablation (comma list)')
    p.add_argument('--name', default='',
                   help='results file suffix: closed_loop_<suite>[_<name>] (e.g. dev seeds)')
    p.add_argument('--fresh', action='store_true')
    p.add_argument('--refresh-fp', action='store_true',
                   help='re-evaluate the FP row and keep the cached cells')
    args = p.parse_args()
    args.budgets = [float(b) for b in args.budgets.split(',')]
    args.methods = args.methods.split(',')
    args.activations = [int(v) for v in args.activations.split(',') if v]
    args.act_methods = args.act_methods.split(',')
    args.rotations = args.rotations.split(',')
    args.ablation_refine = [float(v) for v in args.ablation_refine.split(',') if v]
    args.ablation_samples = [int(v) for v in args.ablation_samples.split(',') if v]
    # Calibration and quantization run in this process on every core (torch's default); the
    # episode workers are separate processes that set their own thread count.
    out = RESULTS / (f'closed_loop_{args.suite}' + (f'_{args.name}' if args.name else '')
                     + '.json')
    done = {} if args.fresh or not out.is_file() else json.loads(out.read_text())
    digest = weights_digest(args.checkpoint)
    if args.execute_steps is None:
        args.execute_steps = checkpoint_schedule(load_policy(args.checkpoint)).execute_steps
    check_same_weights(done.get('meta', {}), digest, out)
    check_same_schedule(done.get('meta', {}), args.execute_steps, out)
    done['rows'] = [retag_stale(r, args.max_prune_fraction) for r in done.get('rows', [])]
    cache = {cell_key(r['method'], r['target_bits'], r['act_bits'], r.get('tag', '')): r
             for r in done.get('rows', [])}
    fp = done.get('fp')
    if fp is None or args.refresh_fp:
        fp = refreshed_fp(fp, fp_row(args, args.headline_episodes), done.get('meta', {}),
                          args.seed0, out)
    if fp.get('seed0', args.seed0) != args.seed0:
        raise SystemExit(f'{out} holds cells evaluated from seed {fp["seed0"]}; this run starts '
                         f'at {args.seed0}. Pass --fresh or --name NAME')
    fp_policy = load_policy(args.checkpoint)
    fp_params = sum(m.weight.numel() for m in fp_policy.quantizable_layers().values())
    calibs = {}
    old_meta = done.get('meta', {})
    commands = list(old_meta.get('commands') or (
        [old_meta['command']] if old_meta.get('command') else []))
    commands.append(command_line())  # every run whose rows the file holds, in order
    rows = list(cache.values())
    # device and commit are those of the last run that evaluated cells (FP records its own)
    meta = {**old_meta, 'suite': args.suite, 'checkpoint': args.checkpoint,
            'checkpoint_sha256': digest or old_meta.get('checkpoint_sha256'),
            'device': old_meta.get('device') or device_name(),
            'commit': old_meta.get('commit') or git_commit(), 'command': command_line(),
            'commands': commands, 'quantized_params': fp_params,
            'eval_seeds': seed_span(args.seed0, rows, fp),
            'execute_steps': args.execute_steps,
            'not_run': {} if any(r['method'] == 'qvla-exact' for r in rows) else {
                'qvla-exact': 'exact sensitivity for all rows x 4 widths needs ~10^5 perturbed '
                'forwards of the calibration batch: hours on 2 CPU cores'}}
    write_json(out, {**done, 'meta': meta, 'fp': fp, 'rows': rows})  # FP kept before any cell
    executor = None
    if args.ray:
        from qvla_ros.quant.ray_exec import RayExecutor
        executor = RayExecutor(args.ray).start()
    for method, bits, act, n, refine, tag, samples, rotation in cells(args):
        key = cell_key(method, bits, act, tag)
        if key in cache:
            continue
        if samples not in calibs:
            calibs[samples] = Calibration(
                calibration_batch(fp_policy, args.calibration, 0, samples, args.stride),
                shards=Path(args.shards) / args.suite / (digest or 'model')
                / f'samples-{samples}',  # per FP weights: a new checkpoint starts its own
                executor=executor)
        row = run_cell(args, calibs[samples], fp_params, method, bits, act, n, refine, tag,
                       rotation)
        row['calibration_samples'] = samples
        meta['not_run'].pop(method, None)
        rows.append(row)
        cache[key] = row
        meta['eval_seeds'] = seed_span(args.seed0, rows, fp)
        meta['device'], meta['commit'] = device_name(), git_commit()
        seconds = dict(old_meta.get('calibration_seconds', {}))
        for k, c in calibs.items():  # keep timings of cells cached from earlier runs
            seconds[str(k)] = {**seconds.get(str(k), {}), **c.seconds}
        meta['calibration_seconds'] = seconds
        write_report(out, meta, fp, rows)  # after every cell: an interrupted run is reported
        print(f'{key}: {row["successes"]}/{row["episodes"]} at {row["real_bits_per_param"]:.2f}'
              f' bits, dev {row["mean_deviation"]:.4f}', flush=True)
    print(write_report(out, meta, fp, rows))


if __name__ == '__main__':
    main()
