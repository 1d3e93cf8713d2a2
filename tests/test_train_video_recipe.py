"""The training pieces of the video recipes: top-5, multi-view evaluation, the step schedule
with warm-up (against the authors' arithmetic), BN/bias parameter groups, fit's options."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cakes_lite.train import (MultiStepWarmup, ViewAverage, bn_bias_param_groups, evaluate,
                              evaluate_views, fit, linear_scaled_lr, make_optimizer,
                              read_checkpoint_info, topk_correct)
from cakes_lite.train.metrics import Meter
from cakes_lite.train.schedule import set_lr


@pytest.mark.parametrize("k, expect", [(1, 1), (2, 2), (3, 3), (5, 3)])
def test_topk_correct(k, expect):
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 0])  # ranks 1, 2 and 3
    assert topk_correct(logits, targets, k) == expect
    with pytest.raises(ValueError, match="k"):
        topk_correct(logits, targets, 0)


def test_meter_top5_survives_the_all_reduce_vector():
    torch.manual_seed(0)
    logits, y = torch.randn(40, 10), torch.randint(0, 10, (40,))
    m = Meter("classification")
    m.update(1.0, logits[:25], y[:25])
    m.update(2.0, logits[25:], y[25:])
    copy = Meter("classification")
    copy.load_tensor(m.as_tensor())
    out = copy.result("val_")
    assert out["val_top5"] == topk_correct(logits, y, 5) / 40
    assert out["val_top1"] == topk_correct(logits, y, 1) / 40 <= out["val_top5"]


class Flat(nn.Module):
    """(N, C, T, H, W) -> (N, K): a linear layer on the flattened clip."""

    def __init__(self, size=3 * 2 * 4 * 4, classes=7):
        super().__init__()
        self.fc = nn.Linear(size, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_view_average_and_evaluate_views():
    torch.manual_seed(0)
    net, x = Flat(), torch.randn(5, 6, 3, 2, 4, 4)  # (N, V, C, T, H, W)
    expect = torch.stack([net(x[:, v]) for v in range(6)], 1).mean(1)
    assert torch.allclose(ViewAverage(net)(x), expect, atol=1e-6)
    assert torch.allclose(ViewAverage(net, chunk=4)(x), expect, atol=1e-6)
    assert torch.equal(ViewAverage(net)(x[:, 0]), net(x[:, 0]))  # single view passes through
    y = torch.randint(0, 7, (5,))
    out = evaluate_views(net, DataLoader(TensorDataset(x, y), batch_size=2), amp=False)
    assert out["n"] == 5 and out["top1"] == topk_correct(expect, y, 1) / 5
    assert out["top5"] == topk_correct(expect, y, 5) / 5
    with pytest.raises(ValueError, match="chunk"):
        ViewAverage(net, chunk=0)


def authors_lrs(base, start, warm, steps, epochs, spe):
    """The learning rate of every step as the authors' main.py + utils.WarmUpLR set it
    (restated): per-batch warm-up before each step, epoch-wise steps after the warm-up."""
    lrs, lr, total, last = [], base, spe * warm, 0
    for epoch in range(epochs):
        if epoch > warm:
            lr = base * 0.1 ** sum(epoch >= s for s in steps)
        for _ in range(spe):
            if epoch < warm:
                last += 1
                lr = start + (base - start) * last / (total + 1e-8)
            lrs.append(lr)
    return lrs


def test_multistep_warmup_matches_the_authors_schedule():
    base, spe = 0.04, 3
    schedule = MultiStepWarmup(milestones=(50, 60), warmup_epochs=5, warmup_start=0.01 / base)
    ours = [base * schedule(s, spe) for s in range(70 * spe)]
    ref = authors_lrs(base, 0.01, 5, (50, 60), 70, spe)
    assert ours == pytest.approx(ref, rel=1e-6)
    assert ours[0] == pytest.approx(0.01 + 0.03 / 15) and ours[14] == pytest.approx(base)
    assert ours[50 * spe - 1] == pytest.approx(base) and ours[50 * spe] == pytest.approx(0.004)
    assert ours[-1] == pytest.approx(0.0004)
    assert MultiStepWarmup(warmup_epochs=0)(0, 5) == 1.0
    assert linear_scaled_lr(24) == pytest.approx(0.01) and linear_scaled_lr(192) == 0.08
    for bad in ({"milestones": (60, 50)}, {"gamma": 0.0}, {"warmup_start": 2.0}):
        with pytest.raises(ValueError):
            MultiStepWarmup(**bad)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(3, 4, 3, padding=1, bias=True), nn.BatchNorm3d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 5))


def test_bn_bias_param_groups_and_lr_mult():
    net = small_net()
    net[0].weight.requires_grad_(False)
    weights, norm, bias = bn_bias_param_groups(net, weight_decay=3e-4)
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    assert ids(weights) == {id(net[5].weight)}  # the frozen conv weight is left out
    assert ids(norm) == {id(net[1].weight), id(net[1].bias)}
    assert ids(bias) == {id(net[0].bias), id(net[5].bias)}
    assert (weights["weight_decay"], norm["weight_decay"], bias["weight_decay"]) == (3e-4, 0, 0)
    opt = make_optimizer("sgd", bn_bias_param_groups(net), lr=0.1, nesterov=False)
    assert all(not g["nesterov"] and g["momentum"] == 0.9 for g in opt.param_groups)
    set_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.05, 0.1])
    assert make_optimizer("sgd", bn_bias_param_groups(net), lr=0.1).param_groups[0]["nesterov"]


def test_fit_with_the_step_schedule(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(12, 3, 2, 4, 4), torch.randint(0, 5, (12,)))
    loader = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator())
    box, seen = {}, []

    def sgd(groups):
        box["opt"] = torch.optim.SGD(groups, lr=0.2, momentum=0.9)
        return box["opt"]

    schedule = MultiStepWarmup(milestones=(2,), warmup_epochs=1, warmup_start=0.25)
    net = small_net()
    fit(net, loader, epochs=3, lr=0.2, optimizer=sgd, param_groups=bn_bias_param_groups(net),
        lr_schedule=schedule, grad_clip=20.0, checkpoint_dir=tmp_path, progress=False,
        step_hook=lambda m: seen.append([g["lr"] for g in box["opt"].param_groups]))
    assert len(seen) == 9  # 3 epochs of 3 batches
    expect = [0.2 * schedule(s, 3) for s in range(9)]
    assert [s[0] for s in seen] == pytest.approx(expect)
    assert [s[2] for s in seen] == pytest.approx([2 * e for e in expect])  # biases: × 2
    info = read_checkpoint_info(tmp_path)
    recorded = json.loads(json.dumps(info["meta"]["fit"]["lr_schedule"]))
    assert recorded == {"name": "MultiStepWarmup", "milestones": [2], "gamma": 0.1,
                        "warmup_epochs": 1, "warmup_start": 0.25}
    with pytest.raises(ValueError, match="lr_schedule"):
        fit(small_net(), loader, lr_schedule=schedule, warmup_epochs=1.0, progress=False)


def test_evaluate_reports_top5():
    torch.manual_seed(1)
    data = TensorDataset(torch.randn(9, 3, 2, 4, 4), torch.randint(0, 5, (9,)))
    net = small_net().eval()
    out = evaluate(net, DataLoader(data, batch_size=4), amp=False)
    logits = net(data.tensors[0])
    assert out["top1"] == topk_correct(logits, data.tensors[1], 1) / 9
    assert out["top5"] == 1.0  # 5 classes: the target is always among the top 5
