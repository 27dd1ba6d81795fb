# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Behaviour cloning: the loss falls, runs are deterministic and resumable."""

import dataclasses
import json

import numpy as np
import pytest
from safetensors.torch import load_file
import torch

from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
from qvla_ros.models.recipes import TrainConfig
from qvla_ros.models.reference import build_reference, CONFIGS
from qvla_ros.models.training import train

TINY = dataclasses.replace(CONFIGS['tiny'], image_size=32, patch_size=16)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """Generated episodes where the action depends on the instruction and the image."""
    root = tmp_path_factory.mktemp('bc')
    w = RolloutWriter(root, DatasetInfo(7, 4, 10.0, ('front',)))
    rng = np.random.default_rng(0)
    for e in range(8):
        left = e % 2 == 0
        img = np.zeros((6, 32, 32, 3), np.uint8)
        img[:, :, :16 if left else 16:, 0] = 200
        act = np.zeros((6, 7), np.float32)
        act[:, 0] = (-0.02 if left else 0.02) + rng.normal(0, 0.002, 6)
        act[:, 6] = 1.0 if left else -1.0
        w.add_episode({'front': img}, np.zeros((6, 4), np.float32), act,
                      np.arange(6, dtype=np.int64), 'go left' if left else 'go right', True,
                      'sim', 'expert')
    return root


@pytest.mark.parametrize('loss', ['l1', 'mse'])
def test_loss_falls_in_200_steps(dataset, tmp_path, loss):
    cfg = TrainConfig(steps=200, batch_size=8, lr=1e-3, warmup=10, val_every=100,
                      save_every=100, val_fraction=0.25, loss=loss)
    out = train(dataset, TINY, tmp_path / 'ck', cfg)
    log = json.loads((tmp_path / 'ck' / 'train_log.json').read_text())['log']
    first = np.mean([e['loss'] for e in log[:10]])
    last = np.mean([e['loss'] for e in log[-10:]])
    assert last < 0.5 * first, (first, last)
    assert out['val_loss'] is not None and (tmp_path / 'ck' / 'config.json').is_file()


def test_bad_loss_is_rejected():
    with pytest.raises(ValueError, match='loss must be one of'):
        TrainConfig(loss='huber')


def test_aux_needs_full_frames():
    with pytest.raises(ValueError, match='crop_scale 1.0'):
        TrainConfig(aux_weight=1.0, crop_scale=0.9)
    with pytest.raises(ValueError, match='pos_init'):
        TrainConfig(pos_init='learned')
    with pytest.raises(ValueError, match='aux_counterfactual'):
        TrainConfig(aux_counterfactual=-1)


AUX = {'aux_weight': 1.0, 'pos_init': 'sincos', 'crop_scale': 1.0}


@pytest.mark.parametrize('extra', [{}, AUX], ids=['plain', 'aux'])
def test_resume_continues_exactly(dataset, tmp_path, extra, monkeypatch):
    from qvla_ros.models import training
    cfg = TrainConfig(steps=12, batch_size=4, warmup=2, save_every=6, val_every=100,
                      val_fraction=0.25, bf16=False, **extra)
    train(dataset, TINY, tmp_path / 'straight', cfg)
    calls, loss = [], training.LOSSES[cfg.loss]

    def killed_at_step_8(pred, target):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt  # the run dies after the state of step 6 was saved
        return loss(pred, target)
    monkeypatch.setitem(training.LOSSES, cfg.loss, killed_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        train(dataset, TINY, tmp_path / 'resumed', cfg)
    assert json.loads((tmp_path / 'resumed' / 'train_state' / 'meta.json').read_text()
                      )['step'] == 6
    steps = []
    monkeypatch.setitem(training.LOSSES, cfg.loss,
                        lambda p, t: steps.append(1) or loss(p, t))
    train(dataset, TINY, tmp_path / 'resumed', cfg)  # picks up train_state at step 6
    assert len(steps) == 6, 'the rerun did not resume: it trained from step 0'
    a = load_file(str(tmp_path / 'straight' / 'model.safetensors'))
    b = load_file(str(tmp_path / 'resumed' / 'model.safetensors'))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)


def test_aux_head_is_trained_but_not_exported(dataset, tmp_path):
    cfg = TrainConfig(steps=4, batch_size=4, warmup=2, save_every=4, val_every=100,
                      val_fraction=0.25, bf16=False)
    train(dataset, TINY, tmp_path / 'plain', cfg)
    train(dataset, TINY, tmp_path / 'aux', dataclasses.replace(cfg, **AUX))
    log = json.loads((tmp_path / 'aux' / 'train_log.json').read_text())['log']
    assert all(np.isfinite(e['aux_loss']) for e in log)
    plain = load_file(str(tmp_path / 'plain' / 'model.safetensors'))
    aux = load_file(str(tmp_path / 'aux' / 'model.safetensors'))
    assert plain.keys() == aux.keys()  # the head is not exported
    # (its state survives a resume: test_resume_continues_exactly[aux] is bit-exact)


def test_warm_start_continues_from_the_checkpoint(dataset, tmp_path):
    cfg = TrainConfig(steps=150, batch_size=8, lr=1e-3, warmup=10, val_every=150,
                      save_every=150, val_fraction=0.25, bf16=False)
    train(dataset, TINY, tmp_path / 'base', cfg)
    base_log = json.loads((tmp_path / 'base' / 'train_log.json').read_text())['log']
    warm = dataclasses.replace(cfg, steps=5, lr=1e-5, init=str(tmp_path / 'base'))
    train(dataset, TINY, tmp_path / 'warm', warm)
    log = json.loads((tmp_path / 'warm' / 'train_log.json').read_text())['log']
    # a fresh model starts at the base run's first loss; the warm start near its last
    assert log[0]['loss'] < 0.5 * np.mean([e['loss'] for e in base_log[:5]])
    assert log[0]['loss'] < 2 * np.mean([e['loss'] for e in base_log[-10:]]) + 1e-3
    for name in ('norm_stats.json', 'config.json'):
        assert ((tmp_path / 'warm' / name).read_text()
                == (tmp_path / 'base' / name).read_text())


def test_warm_start_rejects_what_it_cannot_continue(dataset, tmp_path):
    with pytest.raises(ValueError, match='pos_init'):
        TrainConfig(init='x', pos_init='sincos')
    cfg = TrainConfig(steps=2, batch_size=4, warmup=1, val_every=100, val_fraction=0.25,
                      bf16=False)
    with pytest.raises(ValueError, match='model.safetensors'):
        train(dataset, TINY, tmp_path / 'a', dataclasses.replace(cfg, init=str(tmp_path)))
    train(dataset, TINY, tmp_path / 'base', cfg)
    other = dataclasses.replace(TINY, hidden=TINY.hidden * 2)
    with pytest.raises(ValueError, match='has config'):
        train(dataset, other, tmp_path / 'b',
              dataclasses.replace(cfg, init=str(tmp_path / 'base')))


def test_warm_start_widens_the_proprio_without_changing_the_policy(wide_dataset, tmp_path):
    from qvla_ros.models.checkpoint import load_policy
    from qvla_ros.models.warm_start import widen_proprio
    from qvla_ros.core.types import Observation
    cfg = TrainConfig(steps=2, batch_size=4, warmup=1, val_every=100, val_fraction=0.25,
                      bf16=False)
    train(wide_dataset, TINY, tmp_path / 'base', cfg)  # reads the first 4 of 6 values
    base = load_policy(str(tmp_path / 'base')).float().eval()
    six = dataclasses.replace(TINY, proprio_dim=6)
    data = torch.randn(50, 6) * 3 + 5  # (N, P) training proprio
    wide = widen_proprio(base, six, data).eval()
    rng = np.random.default_rng(2)
    for _ in range(3):
        obs = Observation({'front': rng.integers(0, 255, (32, 32, 3), np.uint8)}, 'go left',
                          rng.normal(0, 1, 6).astype(np.float32))
        np.testing.assert_allclose(wide.predict(obs).actions, base.predict(obs).actions,
                                   atol=1e-6)
    assert wide.proprio_proj.weight.shape == (TINY.hidden, 6)
    torch.testing.assert_close(wide.proprio_mean[:4], base.proprio_mean)
    torch.testing.assert_close(wide.proprio_mean[4:], data[:, 4:].mean(0))
    torch.testing.assert_close(wide.proprio_std[4:], data[:, 4:].std(0))
    warm = dataclasses.replace(cfg, init=str(tmp_path / 'base'))
    train(wide_dataset, six, tmp_path / 'wide', warm)
    assert json.loads((tmp_path / 'wide' / 'config.json').read_text())['config'][
        'proprio_dim'] == 6
    with pytest.raises(ValueError, match='only proprio_dim may grow'):
        train(wide_dataset, TINY, tmp_path / 'narrow',
              dataclasses.replace(cfg, init=str(tmp_path / 'wide')))


@pytest.mark.filterwarnings('ignore:Initializing zero-element tensors')
def test_matched_widening_gives_the_new_inputs_weights_at_the_old_inputs_scale():
    from qvla_ros.models.warm_start import widen_proprio
    base = build_reference(TINY, seed=1)  # reads 4 proprio values
    six = dataclasses.replace(TINY, proprio_dim=6)
    data = torch.randn(50, 6)
    wide = widen_proprio(base, six, data, init='matched', seed=3)
    old, new = wide.proprio_proj.weight[:, :4], wide.proprio_proj.weight[:, 4:]
    torch.testing.assert_close(old, base.proprio_proj.weight)
    ratio = float(new.detach().std() / old.detach().std())
    assert 0.7 < ratio < 1.4, ratio  # same scale, not zero
    again = widen_proprio(base, six, data, init='matched', seed=3).proprio_proj.weight[:, 4:]
    torch.testing.assert_close(again, new)  # seeded
    other = widen_proprio(base, six, data, init='matched', seed=4).proprio_proj.weight[:, 4:]
    assert not torch.equal(other, new)
    # the new inputs now move the policy's actions
    batch = {'image': torch.rand(2, 3, 32, 32), 'tokens': torch.ones(2, 4, dtype=torch.long),
             'mask': torch.ones(2, 4), 'proprio': torch.zeros(2, 6)}
    moved = dict(batch, proprio=batch['proprio'].index_fill(1, torch.tensor([5]), 3.0))
    with torch.no_grad():
        assert not torch.allclose(wide.eval().action_tensor(batch), wide.action_tensor(moved))
    with pytest.raises(ValueError, match='init must be one of'):
        widen_proprio(base, six, data, init='ones')
    none = build_reference(dataclasses.replace(TINY, proprio_dim=0))
    with pytest.raises(ValueError, match='has none'):
        widen_proprio(none, six, data, init='matched')
    with pytest.raises(ValueError, match='widen_init must be one of'):
        TrainConfig(widen_init='ones')


def test_a_model_wider_than_the_dataset_proprio_is_refused(dataset, tmp_path):
    cfg = TrainConfig(steps=1, batch_size=4, warmup=1, val_every=100, bf16=False)
    with pytest.raises(ValueError, match='takes 6 proprio values, the dataset has 4'):
        train(dataset, dataclasses.replace(TINY, proprio_dim=6), tmp_path / 'x', cfg)


def test_a_dataset_with_non_finite_steps_is_refused(dataset, tmp_path):
    import shutil
    from safetensors.numpy import load_file as load_np, save_file as save_np
    from qvla_ros.data.rollouts import episodes
    root = tmp_path / 'nan'
    shutil.copytree(dataset, root)  # then damaged as a dataset from before the finite check
    path = root / episodes(root)[3]['file']
    data = load_np(str(path))
    data['action'][2, 0] = np.nan
    save_np(data, str(path))
    with pytest.raises(ValueError, match='000003.safetensors: actions or proprio are not '
                                         'finite'):
        train(root, TINY, tmp_path / 'out', TrainConfig(steps=2, batch_size=4))
    assert not (tmp_path / 'out').exists()


def test_a_non_finite_loss_stops_training_before_it_reaches_the_weights(
        dataset, tmp_path, monkeypatch):
    import torch.nn.functional as F
    from qvla_ros.models import training
    calls = []

    def loss_that_diverges(pred, target):
        calls.append(1)
        return F.mse_loss(pred, target) * (float('nan') if len(calls) == 4 else 1.0)
    monkeypatch.setitem(training.LOSSES, 'mse', loss_that_diverges)
    out = tmp_path / 'out'
    cfg = TrainConfig(steps=6, batch_size=4, save_every=2, val_fraction=0.0)
    with pytest.raises(RuntimeError, match='training loss is nan at step 4'):
        train(dataset, TINY, out, cfg)
    assert not (out / 'config.json').exists()  # no checkpoint of NaN weights
    meta = json.loads((out / 'train_state' / 'meta.json').read_text())
    assert meta['step'] == 2  # the last good state, from which a rerun resumes


def test_a_single_camera_model_gains_named_cameras(tmp_path):
    from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
    root = tmp_path / 'two'
    rng = np.random.default_rng(0)
    with RolloutWriter(root, DatasetInfo(7, 4, 10.0, ('agentview', 'wrist'))) as w:
        for e in range(4):
            w.add_episode({c: rng.integers(0, 255, (5, 32, 32, 3), np.uint8)
                           for c in ('agentview', 'wrist')},
                          np.zeros((5, 4), np.float32), rng.normal(0, 0.02, (5, 7)).astype(
                              np.float32), np.arange(5), 'go left', True, 'sim', 'expert')
    cfg = TrainConfig(steps=4, batch_size=4, val_fraction=0.0, bf16=False)
    train(root, TINY, tmp_path / 'one', cfg)  # reads the first camera only
    two = dataclasses.replace(TINY, cameras=('agentview', 'wrist'))
    train(root, two, tmp_path / 'both', dataclasses.replace(cfg, init=str(tmp_path / 'one')))
    from qvla_ros.models.checkpoint import load_policy
    one, both = load_policy(str(tmp_path / 'one')), load_policy(str(tmp_path / 'both'))
    assert one.config.cameras == () and both.config.cameras == ('agentview', 'wrist')
    assert both.camera_embed.shape == (2, TINY.hidden)
    with pytest.raises(ValueError, match='only proprio_dim may grow'):
        train(root, dataclasses.replace(TINY, cameras=('wrist',)), tmp_path / 'x',
              dataclasses.replace(cfg, init=str(tmp_path / 'both')))


@pytest.mark.parametrize('native', [True, False])
def test_training_autocasts_to_bf16_only_where_the_cpu_has_native_bf16(
        dataset, tmp_path, monkeypatch, native):
    from qvla_ros.models import training
    monkeypatch.setattr(training, 'gemm_dtype',
                        lambda: torch.bfloat16 if native else torch.float32)
    assert training.uses_bf16(TrainConfig()) is native
    assert training.uses_bf16(TrainConfig(bf16=False)) is False
    calls = []
    real = torch.autocast
    monkeypatch.setattr(torch, 'autocast', lambda *a, **k: calls.append(k['enabled'])
                        or real(*a, **k))
    train(dataset, TINY, tmp_path / 'ck', TrainConfig(steps=2, batch_size=4, val_every=2))
    assert calls and set(calls) == {native}
    log = json.loads((tmp_path / 'ck' / 'train_log.json').read_text())
    assert log['bf16_autocast'] is native
