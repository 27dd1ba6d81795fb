# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Training recipes: one owner for the defaults, and the CLI starts from the recipe it names."""

import pytest

from qvla_ros.cli.qvla import build_parser
from qvla_ros.models import recipes
from qvla_ros.models.recipes import recipe, RECIPES, TrainConfig
from qvla_ros.models.training import LOSSES


def _train_args(*extra):
    return build_parser().parse_args(['train', '--dataset', 'd', '--out', 'o', *extra])


def test_the_loss_names_the_config_accepts_are_the_losses_training_runs():
    assert set(recipes.LOSS_NAMES) == set(LOSSES)


def test_every_recipe_is_a_valid_config_and_warm_starts_keep_their_positions():
    for name, (cfg, use) in RECIPES.items():
        assert isinstance(cfg, TrainConfig) and use
        if name.endswith('-finetune'):
            assert cfg.pos_init == 'random'  # a warm start keeps the model's embeddings
            recipe(name, init='some/folder')


def test_overrides_replace_only_what_is_given():
    cfg = recipe('tabletop', steps=7, lr=None)
    assert cfg.steps == 7 and cfg.lr == RECIPES['tabletop'][0].lr and cfg.aux_weight == 1.0
    with pytest.raises(ValueError, match='unknown recipe'):
        recipe('nope')
    with pytest.raises(ValueError, match='unknown TrainConfig fields'):
        recipe('default', stepz=3)


def test_argparse_repeats_no_default_so_the_recipe_decides():
    args = _train_args()
    assert args.lr is None and args.loss is None and args.crop_scale is None


def test_the_cli_config_is_the_recipe_plus_the_flags_given(monkeypatch):
    from qvla_ros.cli import qvla as cli
    seen = {}
    monkeypatch.setattr('qvla_ros.models.training.train',
                        lambda data, config, out, cfg, progress: seen.update(cfg=cfg) or {})
    monkeypatch.setattr('qvla_ros.storage.atomic.check_output', lambda *a: None)
    cli.cmd_train(_train_args('--recipe', 'metaworld-finetune', '--seed', '5', '--fp32'))
    expected = recipe('metaworld-finetune', seed=5, bf16=False)
    assert seen['cfg'] == expected and expected.lr == 1.5e-4 and expected.steps == 2500
