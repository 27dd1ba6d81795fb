# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Refill the generated blocks of README.md and docs/: results, CLI, parameters, import graph.

    python scripts/docs.py           # rewrite every stale block
    python scripts/docs.py --check   # list stale pages, exit 1 if any (the tests run this)

A block is ``<!-- gen:NAME -->`` ... ``<!-- /gen -->``; what lies between is replaced by the
text of NAME: a block of ``bench/summarize.py`` (numbers from bench/results) or one of the
reference blocks below (built from the code itself).
"""

import argparse
from collections import Counter
import os
from pathlib import Path
import re
import sys
from typing import Callable, Dict, Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.summarize import BLOCKS as RESULT_BLOCKS  # noqa: E402

BLOCK = re.compile(r'(<!-- gen:(\w+) -->\n).*?(<!-- /gen -->)', re.S)
LAYERS = ('cli', 'ros', 'sim', 'runtime', 'models', 'quant', 'kernels', 'data', 'core',
          'storage')


def _subcommands(parser: argparse.ArgumentParser, prog: str) -> Iterator[Tuple[str, str]]:
    """Yield (command line, help text) for ``parser`` and every subcommand, depth first."""
    yield prog, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, f'{prog} {name}')


def cli_block() -> str:
    """Return the CLI reference: the --help of every command of ``qvla`` and ``qvla-ros``."""
    from qvla_ros.cli import qvla, qvla_ros
    os.environ['COLUMNS'] = '100'  # argparse wraps at the terminal width; fix it
    out = []
    for module, prog in ((qvla, 'qvla'), (qvla_ros, 'qvla-ros')):
        for line, text in _subcommands(module.build_parser(), prog):
            out += [f'### `{line}`', '', '```text', text.rstrip(), '```', '']
    return '\n'.join(out).rstrip()


def import_graph_block() -> str:
    """Return the layers' real import graph (mermaid) and counts of imports between layers."""
    import grimp
    graph = grimp.build_graph('qvla_ros')
    edges: Counter = Counter()
    for module in graph.modules:
        parts = module.split('.')
        if len(parts) < 2:
            continue
        for target in graph.find_modules_directly_imported_by(module):
            tparts = target.split('.')
            if tparts[0] == 'qvla_ros' and len(tparts) > 1 and tparts[1] != parts[1]:
                edges[parts[1], tparts[1]] += 1
    lines = ['```mermaid', 'graph TD']
    for (a, b), n in sorted(edges.items(), key=lambda e: (LAYERS.index(e[0][0]),
                                                          LAYERS.index(e[0][1]))):
        lines.append(f'  {a} -->|{n}| {b}')
    lines += ['```', '', f'{len(graph.modules)} modules; an arrow A -->|n| B: n modules of A '
              'import a module of B directly.']
    return '\n'.join(lines)


def policy_params_block() -> str:
    """Return policy_node's parameter table from its one declaration."""
    from qvla_ros.ros.policy_params import PARAMETERS
    lines = ['| parameter | default | changeable at run time | meaning |', '|---|---|---|---|']
    for name, (default, text, read_only, bounds) in PARAMETERS.items():
        rng = f' (range {bounds[0]}-{bounds[1]})' if bounds else ''
        lines.append(f'| `{name}` | `{default!r}` | {"no" if read_only else "yes"} | '
                     f'{text}{rng} |')
    return '\n'.join(lines)


def methods_block() -> str:
    """Return the quantization methods of the registry with their one-line summaries."""
    from qvla_ros.quant.methods import REGISTRY
    lines = ['| `--method` | widths | rounding | activations | needs data | what |',
             '|---|---|---|---|---|---|']
    for name, m in REGISTRY.items():
        summary = (type(m).__doc__ or '').strip().splitlines()[0]
        lines.append(f'| `{name}` | {"uniform" if m.uniform else "per row"} | {m.rounding} | '
                     f'{f"A{m.act_bits}" if m.act_bits else "fp"} | '
                     f'{"yes" if m.needs_data else "no"} | {summary} |')
    return '\n'.join(lines)


def recipes_block() -> str:
    """Return the training recipes and where they differ from the defaults."""
    from qvla_ros.models.recipes import describe, RECIPES
    return '\n'.join(f'* {describe(name)}' for name in RECIPES)


def checkpoints_block() -> str:
    """Return the shipped checkpoints: model, cameras, size, weights digest and plan."""
    import json
    from bench.closed_loop import weights_digest
    lines = ['| checkpoint | model | cameras | proprio | size | weights sha256 | plan |',
             '|---|---|---|---|---|---|---|']
    for folder in sorted(p for p in (ROOT / 'checkpoints').iterdir() if p.is_dir()):
        config = json.loads((folder / 'config.json').read_text())
        model = config.get('config', {})
        quant = config.get('quantization_config')
        size = sum(f.stat().st_size for f in folder.iterdir())
        plan = (f'{quant["method"]}, {quant["achieved_bits_per_param"]:.2f} bits, '
                f'`{quant["plan_id"]}`' if quant else 'FP (bf16)')
        lines.append(f'| `checkpoints/{folder.name}` | {config["model"]} | '
                     f'{", ".join(model.get("cameras") or ["one"])} | '
                     f'{model.get("proprio_dim", 0)} | {size / 1e6:.1f} MB | '
                     f'{weights_digest(str(folder))} | {plan} |')
    return '\n'.join(lines)


BLOCKS: Dict[str, Callable[[], Optional[str]]] = {
    **RESULT_BLOCKS, 'cli': cli_block, 'import_graph': import_graph_block,
    'policy_params': policy_params_block, 'methods': methods_block, 'recipes': recipes_block,
    'checkpoints': checkpoints_block}


def render(text: str, where: str) -> str:
    """Return ``text`` with every generated block refilled."""
    def fill(m):
        name = m.group(2)
        if name not in BLOCKS:
            raise SystemExit(f'{where}: unknown generated block {name!r}; expected one of '
                             f'{sorted(BLOCKS)}')
        body = BLOCKS[name]()
        if body is None:
            raise SystemExit(f'{where}: block {name!r} has no results in bench/results')
        return m.group(1) + body + '\n' + m.group(3)
    return BLOCK.sub(fill, text)


def pages() -> List[Path]:
    """Return README.md and every markdown page of docs/."""
    return [ROOT / 'README.md'] + sorted((ROOT / 'docs').rglob('*.md'))


def main(argv: Optional[List[str]] = None) -> int:
    """Refill (or with --check, list) the stale pages."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true', help='write nothing; exit 1 if stale')
    args = parser.parse_args(argv)
    from qvla_ros.storage.atomic import write_text
    stale = []
    for page in pages():
        text = page.read_text()
        new = render(text, str(page.relative_to(ROOT)))
        if new != text:
            stale.append(str(page.relative_to(ROOT)))
            if not args.check:
                write_text(page, new)
    verb = 'stale' if args.check else 'updated'
    sys.stdout.write(''.join(f'{verb}: {p}\n' for p in stale) or 'docs up to date\n')
    return 1 if args.check and stale else 0


if __name__ == '__main__':
    sys.exit(main())
