# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Auxiliary localization targets: centroids, mention order, masks; the sincos table."""

import numpy as np
import pytest
import torch

from qvla_ros.models import aux_targets
from qvla_ros.models.reference import sincos_2d


def _frame(blocks, size=32):
    """A grey frame with solid squares {colour: (x0, y0, side)}."""
    img = np.full((size, size, 3), 150, np.uint8)
    rgb = {'red': (220, 60, 60), 'green': (60, 220, 60), 'blue': (60, 90, 220)}
    for name, (x0, y0, side) in blocks.items():
        img[y0:y0 + side, x0:x0 + side] = rgb[name]
    return img


def test_centroids_find_each_square_and_mark_missing_colours():
    img = _frame({'red': (2, 4, 4), 'blue': (20, 24, 6)})[None]
    uv, present = aux_targets.centroids(img)
    assert present[0].tolist() == [True, False, True]  # red, green, blue
    # red covers pixels 2..5 in x and 4..7 in y: centre 4.0, 6.0 in pixel units
    np.testing.assert_allclose(uv[0, 0], [4.0 / 32 * 2 - 1, 6.0 / 32 * 2 - 1], atol=1e-6)
    np.testing.assert_allclose(uv[0, 2], [23.0 / 32 * 2 - 1, 27.0 / 32 * 2 - 1], atol=1e-6)


def test_grey_and_dark_pixels_belong_to_no_colour():
    img = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 90, 255)])
    assert not aux_targets.dominant_masks(img).any()


def test_mention_order_follows_the_instruction():
    assert aux_targets.mention_order('put the blue block on the red block') == [2, 0]
    assert aux_targets.mention_order('push the Green block to the left') == [1]
    assert aux_targets.mention_order('go left') == []


def _targets(images, instruction):
    """Targets of every frame read with one instruction, as training composes them."""
    uv, present = aux_targets.centroids(images)
    mentions = torch.from_numpy(aux_targets.mention_indices(instruction)).expand(len(uv), -1)
    vals, mask = aux_targets.compose(torch.from_numpy(uv), torch.from_numpy(present), mentions)
    return vals.numpy(), mask.numpy()


def test_targets_copy_the_mentioned_colours_after_all_colours():
    img = np.stack([_frame({'red': (2, 4, 4), 'green': (10, 10, 4), 'blue': (20, 24, 6)})] * 3)
    vals, mask = _targets(img, 'put the blue block on the red block')
    assert vals.shape == mask.shape == (3, aux_targets.num_targets())
    uv = vals.reshape(3, -1, 2)
    np.testing.assert_array_equal(uv[:, 3], uv[:, 2])  # first mention: blue
    np.testing.assert_array_equal(uv[:, 4], uv[:, 0])  # second mention: red
    assert mask.all()
    _, mask = _targets(img, 'push the green block to the left')
    assert mask.reshape(3, -1, 2)[:, 4].sum() == 0  # no second colour mentioned


def test_bad_images_are_rejected():
    with pytest.raises(ValueError, match='uint8 images'):
        aux_targets.dominant_masks(np.zeros((2, 8, 8, 3), np.float32))


def test_sincos_rows_are_distinct_and_bounded():
    table = sincos_2d(4, 16)
    assert table.shape == (16, 16) and table.abs().max() <= 1.0
    dist = torch.cdist(table, table) + torch.eye(16) * 10
    assert dist.min() > 0.1
    with pytest.raises(ValueError, match='divisible by 4'):
        sincos_2d(4, 10)


def test_counterfactual_targets_follow_the_other_instruction():
    # frame 0 read with its own instruction (red), frame 0 read with another one (blue on green)
    uv = torch.tensor([[[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]]).expand(2, -1, -1)
    present = torch.tensor([[True, True, False]]).expand(2, -1)
    mentions = torch.stack([torch.from_numpy(aux_targets.mention_indices(t)) for t in (
        'push the red block to the left', 'put the blue block on the green block')])
    vals, mask = aux_targets.compose(uv, present, mentions)
    vals, mask = vals.view(2, -1, 2), mask.view(2, -1, 2)
    assert vals[0, 3].tolist() == pytest.approx([0.1, 0.2]) and mask[0, 3].all()
    assert not mask[0, 4].any()  # one mention only
    assert not mask[1, 3].any()  # blue is not in the frame
    assert vals[1, 4].tolist() == pytest.approx([0.3, 0.4]) and mask[1, 4].all()
    assert not mask[:, 2].any()  # blue absent, whatever the instruction
