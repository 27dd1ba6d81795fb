# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``qvla sensitivity | allocate | quantize | inspect``: argparse -> config -> library."""

import argparse
from pathlib import Path
import shutil
from typing import Optional

from qvla_ros.quant.calibration_batch import calibration_batch, MAX_SAMPLES, STRIDE

CLIP_SEARCH = 'search'  # --act-clip's value that searches each layer's ratio


def _ints(text: str):
    return tuple(int(v) for v in text.split(',') if v.strip())


def cmd_sensitivity(args) -> int:
    """Measure action-space sensitivity and write the sensitivity file."""
    from qvla_ros.models.checkpoint import load_policy
    from qvla_ros.quant.artifacts import SensitivityFile
    from qvla_ros.quant.sensitivity import SensitivityConfig
    from qvla_ros.core.spec import QuantSpec
    from qvla_ros.storage.atomic import check_output
    if not args.dataset and not args.synthetic:
        raise ValueError('give --dataset DIR (a qvla-rollouts folder) or --synthetic N')
    check_output(args.out, args.overwrite, [args.model, args.dataset])
    policy = load_policy(args.model, args.upstream)
    batch = calibration_batch(policy, args.dataset, args.synthetic, args.max_samples,
                              args.stride)
    cfg = SensitivityConfig(bits=_ints(args.bits), method=args.method,
                            projections=args.projections, refine_fraction=args.refine_fraction,
                            spec=QuantSpec(group_size=args.group_size),
                            rounding=args.rounding, progress=True)
    scores, refined = _measure_resumably(policy, batch, cfg, args)
    n = next(iter(batch.values())).shape[0]
    extra = {'model': args.model, 'projections': cfg.projections,
             'refine_fraction': cfg.refine_fraction, 'spec': cfg.spec.to_dict()}
    if cfg.rounding != 'rtn':  # absent means RTN, as in files written before the option
        extra['rounding'] = cfg.rounding
    if refined is not None:
        extra['refined_rows'] = {k: int(v.sum()) for k, v in refined.items()}
    layers = policy.quantizable_layers()
    SensitivityFile(cfg.bits, cfg.method.value, n, scores,
                    {k: m.in_features for k, m in layers.items()}, extra).save(Path(args.out))
    shutil.rmtree(f'{args.out}.shards', ignore_errors=True)  # merged: the shards are done
    print(f'wrote {args.out}: {len(scores)} layers, {sum(s.shape[1] for s in scores.values())} '
          f'rows, bits {cfg.bits}, method {cfg.method.value}, {n} samples')
    return 0


def _measure_resumably(policy, batch, cfg, args):
    """Measure with every finished exact shard kept in ``<out>.shards`` (and Ray if asked)."""
    from qvla_ros.quant.sensitivity import measure
    from qvla_ros.quant.shard_store import fingerprint, ShardStore
    folder = Path(f'{args.out}.shards')
    store = ShardStore.open(folder, fingerprint(policy, batch, cfg), replace=args.overwrite)
    executor = None
    try:
        if store.done():
            print(f'resuming: {len(store.done())} shards already measured in {folder}')
        if args.ray:
            from qvla_ros.quant.ray_exec import RayExecutor
            executor = RayExecutor(args.ray, args.cpus_per_task, args.gpus_per_task).start()
        return measure(policy, batch, cfg, store=store, executor=executor)
    finally:
        if executor is not None:
            executor.stop()
        store.__exit__()


def cmd_allocate(args) -> int:
    """Turn a sensitivity file into a plan at a target average bits per parameter."""
    from qvla_ros.quant.allocation import AllocationConfig, greedy_allocate
    from qvla_ros.quant.artifacts import QuantPlan, SensitivityFile
    from qvla_ros.quant.baselines.layerwise import layerwise_allocate
    from qvla_ros.core.spec import QuantSpec
    from qvla_ros.storage.atomic import check_output
    check_output(args.out, args.overwrite, [args.sensitivity])
    sens = SensitivityFile.load(Path(args.sensitivity))
    spec = QuantSpec.from_dict(sens.extra['spec']) if 'spec' in sens.extra else QuantSpec()
    cfg = AllocationConfig(target_bits=args.target_bits, candidates=_ints(args.candidates),
                           budget=args.budget, prune_threshold=args.prune_threshold,
                           group_size=spec.group_size,
                           max_prune_fraction=args.max_prune_fraction)
    alloc = (layerwise_allocate if args.layerwise else greedy_allocate)(
        sens.scores, sens.bits, sens.in_features, cfg)
    plan = QuantPlan(spec, 'layerwise' if args.layerwise else f'qvla-{sens.method}',
                     alloc.bits, sens.in_features, args.target_bits,
                     budget_bytes=int(alloc.budget) if args.budget == 'bytes' else None,
                     candidates=cfg.candidates,
                     extra={'sensitivity': str(args.sensitivity),
                            'total_sensitivity': alloc.total_sensitivity,
                            'max_prune_fraction': cfg.max_prune_fraction,
                            'prune_threshold': cfg.prune_threshold})
    if 'rounding' in sens.extra:  # the rows are rounded as they were measured
        plan.extra['rounding'] = sens.extra['rounding']
    plan.save(Path(args.out))
    print(f'wrote {args.out}: achieved {plan.achieved_bits():.4f} bits/param (target '
          f'{args.target_bits}), histogram {plan.histogram()}, plan id {plan.plan_id}')
    return 0


def build_quantized(model: str, out: Path, plan_dir=None, method=None, bits=None,
                    inputs: Optional[dict] = None, dataset=None, max_samples: int = MAX_SAMPLES,
                    stride: int = STRIDE, refine_fraction: Optional[float] = None, upstream=None,
                    overwrite: bool = False) -> str:
    """Write a packed checkpoint of ``model`` from a plan folder or a method at ``bits``.

    ``inputs``: MethodConfig's layer-input options (``input_options``) for ``method``.
    ``out`` may not be (or hold) an input, nor exist unless ``overwrite``. Return a one-line
    summary with the real packed bytes.
    """
    from qvla_ros.storage.atomic import check_output
    check_output(out, overwrite, [model, plan_dir, dataset])
    from qvla_ros.models.checkpoint import load_policy, save_quantized
    from qvla_ros.quant.apply import (check_plan_matches, plan_rounding, quantize_,
                                      results_from_plan)
    from qvla_ros.quant.artifacts import QuantPlan
    from qvla_ros.quant.methods import (apply_method, Calibration, MethodConfig, plan_bytes,
                                        REGISTRY)
    if (plan_dir is None) == (method is None):
        raise ValueError('give exactly one of --plan DIR or --method M (with --bits B)')
    if plan_dir is not None and inputs and (inputs.get('act_bits') or inputs.get('rotation')
                                            or inputs.get('clip_search')):
        raise ValueError('--act-bits, --rotation and --act-clip search go with --method M: a '
                         'plan from qvla allocate was measured on unrotated FP inputs')
    policy = load_policy(model, upstream)
    layers = policy.quantizable_layers()
    fp_bytes = sum(m.weight.numel() * 2 for m in layers.values())
    if plan_dir is not None:
        plan, act = QuantPlan.load(Path(plan_dir)), None
        check_plan_matches(layers, plan)
        hessians = None
        if dataset and plan_rounding(plan) != 'rtn':
            from qvla_ros.quant.calibration import collect_hessians
            hessians = collect_hessians(
                policy, calibration_batch(policy, dataset, 0, max_samples, stride))
        results = results_from_plan(plan, layers, hessians)
        quantize_(policy, layers, results, plan.spec, mode='packed')
        packed = plan_bytes(policy, plan)
    else:
        if bits is None:
            raise ValueError('--method needs --bits (average bits per parameter)')
        given = {} if refine_fraction is None else {'refine_fraction': refine_fraction}
        cfg = MethodConfig(method, float(bits), **(inputs or {}), **given)
        if REGISTRY[cfg.method].needs_data and not dataset:
            raise ValueError(f'method {method} needs calibration data: give --dataset DIR')
        batch = calibration_batch(policy, dataset, 0, max_samples, stride) if dataset else {}
        plan, act, packed = apply_method(policy, Calibration(batch), cfg)
    save_quantized(policy, plan, Path(out), act, overwrite)
    return (f'quantized layers {packed} bytes vs {fp_bytes} fp16 bytes '
            f'({packed / fp_bytes:.3f}), {plan.method}, plan {plan.plan_id}')


def cmd_quantize(args) -> int:
    """Pack a policy with a plan or a method and write a quantized checkpoint folder."""
    line = build_quantized(args.model, Path(args.out), args.plan, args.method, args.bits,
                           input_options(args), args.dataset, args.max_samples, args.stride,
                           args.refine_fraction, args.upstream, args.overwrite)
    print(f'wrote {args.out}: {line}')
    return 0


def _plan_of(path: Path):
    """Return the plan of a plan folder, or the verified plan of a quantized checkpoint."""
    from qvla_ros.quant.artifacts import QuantPlan
    if not (path / 'config.json').is_file():
        return QuantPlan.load(path)
    from qvla_ros.models.checkpoint import load_policy
    plan = getattr(load_policy(str(path)), 'qvla_plan', None)
    if plan is None:
        raise ValueError(f'{path} is a full-precision checkpoint; expected a plan folder or a '
                         'quantized checkpoint')
    return plan


def cmd_inspect(args) -> int:
    """Print the per-layer bit table and histogram; optionally write PNG plots."""
    from qvla_ros.kernels.format import layer_bytes
    from qvla_ros.quant.artifacts import SensitivityFile
    plan = _plan_of(Path(args.plan))
    cands = sorted(plan.candidates)
    print(f'plan {plan.plan_id}  method {plan.method}  spec {plan.spec.to_dict()}')
    print(f'target {plan.target_bits} bits/param, achieved {plan.achieved_bits():.4f}')
    print(f'{"layer":40s} {"out x in":>12s} ' + ' '.join(f'{b:>6d}b' for b in cands)
          + '   avg      bytes  /fp16')
    packed = fp16 = 0
    for name, bits in sorted(plan.bits.items()):
        hist, k = plan.histogram(name), plan.in_features[name]
        size = layer_bytes(bits, k, plan.spec.group_size)  # weights, scales, zeros, indices
        packed, fp16 = packed + size, fp16 + 2 * bits.numel() * k
        print(f'{name:40s} {bits.numel():>5d}x{k:<6d} '
              + ' '.join(f'{hist[b]:>7d}' for b in cands)
              + f'  {bits.float().mean():5.2f} {size:>10d} {size / (2 * bits.numel() * k):6.3f}')
    total = plan.histogram()
    rows = sum(total.values())
    print('histogram: ' + ', '.join(f'{b} bits {total[b]} ({100 * total[b] / rows:.1f}%)'
                                    for b in cands))
    print(f'packed bytes {packed} of {fp16} fp16 bytes ({packed / fp16:.3f}), biases excluded')
    if args.plots:
        sens = SensitivityFile.load(Path(args.sensitivity)) if args.sensitivity else None
        from qvla_ros.quant.report import write_plots
        for path in write_plots(plan, sens, Path(args.plots)):
            print(f'wrote {path}')
    return 0


def input_options(args) -> dict:
    """Return the layer-input options of MethodConfig given on the command line."""
    from qvla_ros.quant.methods import MethodConfig
    search = args.act_clip == CLIP_SEARCH
    return {'act_bits': args.act_bits, 'rotation': args.rotation, 'clip_search': search,
            'act_clip': MethodConfig.act_clip if search else args.act_clip}


def clip_option(text: str):
    """Parse --act-clip: a ratio in (0, 1], or 'search' (each layer's chosen on the data)."""
    if text == CLIP_SEARCH:
        return text
    try:
        return float(text)  # its range is checked with the rest of the method's config
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a ratio in (0, 1] or '{CLIP_SEARCH}', got "
                                         f'{text!r}') from None


def add_quant_source(p) -> None:
    """Add --plan | --method/--bits/--act-bits and calibration options to a parser."""
    from qvla_ros.quant.activation import ROTATIONS
    from qvla_ros.quant.methods import MethodConfig, REGISTRY
    p.add_argument('--plan', help='plan folder from `qvla allocate`')
    p.add_argument('--method', choices=list(REGISTRY), help='quantize with this method instead')
    p.add_argument('--bits', type=float, help='--method: average bits per parameter')
    p.add_argument('--act-bits', type=int, choices=[4, 8],
                   help='--method: quantize layer inputs per token too (W*A8, W*A4)')
    p.add_argument('--rotation', choices=list(ROTATIONS),
                   help='--method: rotate layer inputs (weights to match) before rounding: '
                   'hadamard online in every layer, quarot: the residual stream folded '
                   '(qvla-ref)')
    p.add_argument('--act-clip', type=clip_option, default=MethodConfig.act_clip,
                   help="--method with --act-bits: fraction of a token's absmax its grid spans,"
                   f" or '{CLIP_SEARCH}': each layer's chosen on the calibration data")
    p.add_argument('--dataset', help='calibration rollout dataset (--method, and --plan '
                   'with gptq rounding)')
    p.add_argument('--max-samples', type=int, default=MAX_SAMPLES,
                   help='calibration steps, spread evenly over the whole dataset')
    p.add_argument('--stride', type=int, default=STRIDE, help='take every k-th step')
    p.add_argument('--refine-fraction', type=float, default=MethodConfig.refine_fraction,
                   help='--method qvla*: share of rows re-measured exactly')
    add_upstream(p)


def add_upstream(p) -> None:
    """Add --upstream: how to run an upstream OpenVLA / OFT folder where its files do not say."""
    p.add_argument('--upstream', default='', metavar='NAME=VALUE,...',
                   help='upstream OpenVLA / OFT folders: unnorm_key, chunk_size, '
                   'normalization (bounds_q99|bounds), num_images, attention '
                   '(causal|bidirectional), center_crop (true|false); unset ones come from '
                   'the robot platform the norm stats key names')


def add_overwrite(p) -> None:
    """Add --overwrite: without it an existing --out is refused, never replaced."""
    p.add_argument('--overwrite', action='store_true',
                   help='replace an existing --out (atomically); never allowed for an input')


def add_commands(sub) -> None:
    """Register the quantization subcommands on an argparse subparsers object."""
    from qvla_ros.quant.allocation import AllocationConfig
    from qvla_ros.quant.rounding import ROUNDINGS
    from qvla_ros.quant.sensitivity import Method, SensitivityConfig
    sens, alloc = SensitivityConfig(), AllocationConfig()
    p = sub.add_parser('sensitivity', help='measure action-space channel sensitivity')
    p.add_argument('--model', required=True, help='toy, toy:SEED or a checkpoint folder')
    add_upstream(p)
    p.add_argument('--dataset', help='rollout dataset folder (qvla-rollouts)')
    p.add_argument('--synthetic', type=int, default=0, help='use N synthetic observations')
    p.add_argument('--max-samples', type=int, default=MAX_SAMPLES,
                   help='calibration steps, spread evenly over the whole dataset')
    p.add_argument('--stride', type=int, default=STRIDE, help='take every k-th step')
    p.add_argument('--method', default=sens.method.value, choices=[m.value for m in Method])
    p.add_argument('--bits', default=','.join(map(str, sens.bits)))
    p.add_argument('--projections', type=int, default=sens.projections)
    p.add_argument('--refine-fraction', type=float, default=sens.refine_fraction)
    p.add_argument('--group-size', type=int, default=sens.spec.group_size)
    p.add_argument('--rounding', default=sens.rounding, choices=ROUNDINGS,
                   help='measure each row with its RTN or its GPTQ delta (plans made from '
                   'the file round rows the same way)')
    p.add_argument('--ray', metavar='local|ADDRESS',
                   help="run exact shards as Ray tasks: 'local' (a private instance on this "
                   "machine, loopback only) or a cluster's address ('auto', HOST:PORT, ray://...)")
    p.add_argument('--cpus-per-task', type=float, default=1.0, help='--ray: CPUs per shard task')
    p.add_argument('--gpus-per-task', type=float, default=0.0,
                   help='--ray: GPUs per shard task (> 0 runs shards on CUDA)')
    p.add_argument('--out', required=True,
                   help='sensitivity file; finished shards are kept in OUT.shards until it is '
                   'written, and a rerun of the same command resumes from them')
    add_overwrite(p)
    p.set_defaults(func=cmd_sensitivity)
    p = sub.add_parser('allocate', help='greedy Eq. 8 bit allocation -> plan folder')
    p.add_argument('--sensitivity', required=True)
    p.add_argument('--target-bits', type=float, required=True)
    p.add_argument('--budget', default=alloc.budget, choices=['params', 'bytes'])
    p.add_argument('--candidates', default=','.join(map(str, alloc.candidates)))
    p.add_argument('--max-prune-fraction', type=float, default=alloc.max_prune_fraction,
                   help='cap on the pruned (0-bit) rows of each layer')
    p.add_argument('--prune-threshold', type=float, default=alloc.prune_threshold)
    p.add_argument('--layerwise', action='store_true', help='one width per layer (ablation)')
    p.add_argument('--out', required=True)
    add_overwrite(p)
    p.set_defaults(func=cmd_allocate)
    p = sub.add_parser('quantize', help='pack a model with a plan or a method -> quantized '
                                        'checkpoint')
    p.add_argument('--model', required=True)
    add_quant_source(p)
    p.add_argument('--out', required=True)
    add_overwrite(p)
    p.set_defaults(func=cmd_quantize)
    p = sub.add_parser('inspect', help='print a plan; --plots DIR writes PNGs')
    p.add_argument('plan', help='plan folder, or a quantized checkpoint folder')
    p.add_argument('--sensitivity')
    p.add_argument('--plots')
    p.set_defaults(func=cmd_inspect)
