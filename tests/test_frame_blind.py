"""What a frame-order-blind model can know about something-something-lite, and whether our 2D
networks are such models.

``frame_blind_ceiling`` is checked against the hand derivation (bag of frames, all 13 classes:
3 static shapes + 4 × ½ pairs + 4 moves × ⅒ = 6.4 of 13). The network checks run an untrained
``resnet3d_tiny`` on random clips: the frame-wise 2D net without temporal stride must give the
same logits for a clip and any reordering of its frames (so its top-1 within a reversed pair is
at chance), while the temporally strided one keeps frames 0, 4 in its last stage only — it drops
frames and so can tell some reversed clips apart.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from cakes_lite.data import CLASSES, REVERSED_PAIRS
from cakes_lite.data.frame_blind import class_groups, frame_blind_ceiling
from cakes_lite.models import resnet3d_tiny
from cakes_lite.viz.training import class_accuracy

STATIC = ["static_disk", "static_square", "static_cross"]


@pytest.mark.parametrize("classes, shape, motion, expected", [
    (None, True, False, Fraction(32, 65)),   # 6.4 / 13: statics by shape, moves lost to them
    (None, False, False, Fraction(4, 13)),   # steady / spinning / size / blinks: one class each
    (None, True, True, Fraction(8, 13)),     # a frame *set*: every pair at ½, statics at 1
    (None, False, True, Fraction(6, 13)),
    (CLASSES[:10], True, False, Fraction(2, 5)),   # the ten paired classes: below ½
    (["move_right", "move_down"], True, False, Fraction(1, 2)),  # same frames, other motion
    (["grow", "shrink"], True, True, Fraction(1, 2)),  # a reversed pair: chance, motion or not
    (STATIC, True, False, Fraction(1)),
    (STATIC, False, False, Fraction(1, 3)),
])
def test_ceiling_matches_the_hand_derivation(classes, shape, motion, expected):
    got = frame_blind_ceiling(classes, shape_visible=shape, motion_visible=motion)
    assert got["top1"] == pytest.approx(float(expected), abs=1e-12)
    assert got["top1"] == pytest.approx(np.mean(list(got["per_class"].values())), abs=1e-12)


@pytest.mark.parametrize("motion", [False, True])
def test_reversed_pairs_are_at_chance_or_below(motion):
    per = frame_blind_ceiling(motion_visible=motion)["per_class"]
    for a, b in REVERSED_PAIRS:
        assert per[a] == per[b] <= 0.5


def test_groups_partition_the_classes_and_errors_name_the_input():
    groups = class_groups()
    assert sorted(c for cs in groups.values() for c in cs) == sorted(CLASSES)
    assert list(class_groups(STATIC)) == ["static"]
    with pytest.raises(ValueError, match="expected distinct names"):
        frame_blind_ceiling(["static_disk", "jump"])


def test_class_accuracy_reads_rows():
    m = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 2]])
    acc = class_accuracy(m, ["a", "b", "c"])
    assert acc["a"] == 0.75 and np.isnan(acc["b"]) and acc["c"] == 0.5
    with pytest.raises(ValueError, match=r"expected \(2, 2\)"):
        class_accuracy(m, ["a", "b"])


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def test_framewise_2d_net_without_temporal_stride_is_blind_to_frame_order():
    torch.manual_seed(0)
    model = resnet3d_tiny(13, builder="2d", temporal_stride=False)
    x = torch.rand(2, 3, 8, 20, 20)
    ref = _logits(model, x)
    for order in (torch.arange(7, -1, -1), torch.randperm(8, generator=torch.Generator()
                                                          .manual_seed(1))):
        torch.testing.assert_close(_logits(model, x[:, :, order]), ref, atol=1e-5, rtol=1e-5)


def test_temporally_strided_2d_net_drops_frames():
    torch.manual_seed(0)
    model = resnet3d_tiny(13, builder="2d")  # stage strides (2, 2, 2): frames 0, 4 survive
    x = torch.rand(2, 3, 8, 20, 20)
    ref = _logits(model, x)
    y = x.clone()
    y[:, :, [1, 2, 3, 5, 6, 7]] = torch.rand(2, 3, 6, 20, 20)  # change every other frame
    torch.testing.assert_close(_logits(model, y), ref)  # ...and nothing changes
    assert not torch.allclose(_logits(model, x.flip(2)), ref, atol=1e-3)  # order matters
