# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Upstream folders: memory, LIBERO preprocessing, pickle-free conversion, the whole chain."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from qvla_ros.cli.qvla import main as qvla
from qvla_ros.core.types import Observation
from qvla_ros.models.checkpoint import load_policy
from qvla_ros.models.openvla_inputs import center_crop


def _tf_crop_and_resize(img, area):
    """tf.image.crop_and_resize (bilinear) of a centred box, from TensorFlow's documentation.

    img (H, W, C) float; the output pixel (i, j) samples (y1 (H-1) + i (y2-y1)(H-1)/(H-1),
    x1 (W-1) + j (x2-x1)(W-1)/(W-1)) bilinearly.
    """
    h, w, _ = img.shape
    side = np.sqrt(area)
    y1 = x1 = (1 - side) / 2
    y2 = x2 = y1 + side
    out = np.zeros_like(img)
    for i in range(h):
        y = y1 * (h - 1) + i * (y2 - y1) * (h - 1) / (h - 1)
        top, frac_y = int(np.floor(y)), y - np.floor(y)
        bottom = min(top + 1, h - 1)
        for j in range(w):
            x = x1 * (w - 1) + j * (x2 - x1) * (w - 1) / (w - 1)
            left, frac_x = int(np.floor(x)), x - np.floor(x)
            right = min(left + 1, w - 1)
            t = img[top, left] + (img[top, right] - img[top, left]) * frac_x
            b = img[bottom, left] + (img[bottom, right] - img[bottom, left]) * frac_x
            out[i, j] = t + (b - t) * frac_y
    return out


def test_the_libero_centre_crop_is_tf_crop_and_resize():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 20, 3)).astype(np.float64) / 255
    expected = np.round(_tf_crop_and_resize(img, 0.9) * 255) / 255  # back to uint8
    got = center_crop(torch.from_numpy(img).permute(2, 0, 1)[None].float())[0]
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_center_crop_is_an_option_that_changes_the_input(up, tmp_path):
    up.write_upstream(tmp_path / 'oft', oft=True)
    plain = load_policy(str(tmp_path / 'oft'))
    cropped = load_policy(str(tmp_path / 'oft'), 'center_crop=true')
    assert cropped.config.center_crop and not plain.config.center_crop
    rng = np.random.default_rng(1)
    obs = Observation({c: rng.integers(0, 256, (up.IMG, up.IMG, 3), dtype=np.uint8)
                       for c in ('agentview', 'wrist')}, 'pick up the cup',
                      np.zeros(8, np.float32))
    assert not torch.equal(plain.make_batch(obs)['pixels'], cropped.make_batch(obs)['pixels'])


def test_convert_writes_a_folder_without_pickles_that_predicts_the_same(up, tmp_path, capsys):
    src, out = tmp_path / 'oft', tmp_path / 'converted'
    up.write_upstream(src, oft=True, film=True)
    assert qvla(['convert', str(src), '--out', str(out)]) == 0
    assert 'converted action_head--150000_checkpoint.pt' in capsys.readouterr().out
    assert not list(out.glob('*.pt')) and len(list(out.glob('*--*.safetensors'))) == 3
    rng = np.random.default_rng(2)
    obs = Observation({c: rng.integers(0, 256, (up.IMG, up.IMG, 3), dtype=np.uint8)
                       for c in ('agentview', 'wrist')}, 'push the red block',
                      rng.uniform(-1, 1, 8).astype(np.float32))
    a, b = load_policy(str(out)), load_policy(str(src))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the same weights; float sums may round differently with another memory alignment
    np.testing.assert_allclose(a.predict(obs).actions, b.predict(obs).actions, atol=1e-5)
    assert qvla(['convert', str(src), '--out', str(out)]) == 2  # never over an existing one


MEASURE = '''
import json, sys
from pathlib import Path
def rss(key):
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
from transformers import (AutoTokenizer, Dinov2WithRegistersModel, LlamaModel,
                          SiglipVisionModel)
from qvla_ros.models.checkpoint import load_policy
import qvla_ros.models.openvla_loader
base = rss('VmRSS:')
policy = load_policy(sys.argv[1])
for p in policy.state_dict().values():
    p.sum()
print(json.dumps({'base': base, 'peak': rss('VmHWM:'), 'dtype': str(policy.lm_head.weight.dtype)}))
'''


def test_loading_costs_about_the_checkpoint_in_its_own_dtype(tmp_path):
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench.upstream_load import write_folder
    nbytes = write_folder(tmp_path / 'oft', hidden=1024, layers=6, mlp=2752)
    assert nbytes > 150e6
    run = subprocess.run([sys.executable, '-c', MEASURE, str(tmp_path / 'oft')],
                         capture_output=True, text=True, check=True)
    m = json.loads(run.stdout.strip().splitlines()[-1])
    assert m['dtype'] == 'torch.bfloat16'
    assert (m['peak'] - m['base']) / nbytes < 1.3  # a float32 build would need 2x and more


@pytest.mark.slow
def test_the_whole_chain_on_a_hub_oft_folder(up, tmp_path, capsys):
    from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
    folder = tmp_path / 'oft'
    up.write_upstream(folder, oft=True)
    data = tmp_path / 'calib'
    rng = np.random.default_rng(0)
    with RolloutWriter(data, DatasetInfo(7, 8, 10.0, ('agentview', 'wrist'))) as w:
        for text in ('push the red block to the left', 'pick up the cup'):
            w.add_episode({c: rng.integers(0, 256, (3, up.IMG, up.IMG, 3), dtype=np.uint8)
                           for c in ('agentview', 'wrist')},
                          rng.uniform(-1, 1, (3, 8)).astype(np.float32),
                          rng.uniform(-0.5, 0.5, (3, 7)).astype(np.float32),
                          np.arange(3) * 100_000_000, text, True, 'sim', 'expert')
    sens, plan, q = tmp_path / 's.safetensors', tmp_path / 'plan', tmp_path / 'q'
    assert qvla(['sensitivity', '--model', str(folder), '--dataset', str(data), '--method',
                 'proxy', '--max-samples', '4', '--stride', '1', '--out', str(sens)]) == 0
    assert qvla(['allocate', '--sensitivity', str(sens), '--target-bits', '4', '--out',
                 str(plan)]) == 0
    assert qvla(['quantize', '--model', str(folder), '--plan', str(plan), '--out',
                 str(q)]) == 0
    packed = load_policy(str(q))
    from qvla_ros.kernels.linear import MixedBitLinear
    assert sum(isinstance(m, MixedBitLinear) for m in packed.modules()) == \
        len(load_policy(str(folder)).quantizable_layers())
    c = packed.config
    assert (c.num_images, c.attention, c.chunk_size) == (2, 'bidirectional', 8)
    obs = Observation({c: rng.integers(0, 256, (up.IMG, up.IMG, 3), dtype=np.uint8)
                       for c in ('agentview', 'wrist')}, 'pick up the cup',
                      rng.uniform(-1, 1, 8).astype(np.float32))
    fp = load_policy(str(folder)).predict(obs).actions
    got = packed.predict(obs).actions
    assert got.shape == (8, 7) and np.isfinite(got).all()
    assert np.abs(got - fp).max() < 0.5 * np.abs(fp).max() + 0.05
    assert qvla(['inspect', str(q)]) == 0 and 'histogram:' in capsys.readouterr().out
