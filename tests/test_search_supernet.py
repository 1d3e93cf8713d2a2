"""SearchConv3d and supernet(): shapes, sampling, BN statistics, eval mode, MACs, BN absorption."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cakes_lite as cl
from cakes_lite.search import search_layers

SPACE = "video-123d"


def single_filter(layer, x, op: int, c: int) -> torch.Tensor:
    """Output of filter c of candidate sub-kernel ``op`` alone (before BN): (N, 1, D', H', W')."""
    w = layer.weights[layer.candidates[op]][c : c + 1]
    return F.conv3d(x, w, None, layer.stride, tuple(s // 2 for s in w.shape[2:]))


def small_net() -> nn.Sequential:
    """conv+BN (absorbed), conv without BN (stride 2), a non-searchable (1,3,3) conv, head."""
    return nn.Sequential(
        nn.Conv3d(2, 6, 3, padding=1, bias=False), nn.BatchNorm3d(6), nn.ReLU(),
        nn.Conv3d(6, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv3d(8, 8, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 3),
    )


@pytest.mark.parametrize("mode", ["performance", "cost"])
@pytest.mark.parametrize("stride,size", [(1, (3, 5, 4)), (2, (5, 7, 6)), ((1, 2, 2), (4, 6, 9))])
@pytest.mark.parametrize("training", [True, False])
def test_layer_shapes_and_backward(mode, stride, size, training):
    layer = cl.SearchConv3d(3, 5, SPACE, 3, stride, mode=mode).train(training)
    x = torch.randn(2, 3, *size, requires_grad=True)
    ref = nn.Conv3d(3, 5, 3, stride, 1)(x)
    y = layer(x)
    assert y.shape == ref.shape
    assert layer.output_size == tuple(ref.shape[2:])
    y.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert layer.bn.weight.grad is not None


def test_performance_sampling_one_candidate_per_channel():
    layer = cl.SearchConv3d(2, 7, SPACE, mode="performance")
    seen = torch.zeros(3 * 7)
    for _ in range(60):
        idx = layer.sample()
        assert idx.numel() == 7
        assert sorted((idx % 7).tolist()) == list(range(7))  # each output channel exactly once
        seen[idx] += 1
    assert (seen > 0).all()  # every candidate gets sampled eventually


def test_performance_computes_and_trains_only_sampled_filters():
    torch.manual_seed(1)
    layer = cl.SearchConv3d(2, 6, SPACE, mode="performance").train()
    idx = layer.sample()
    layer.sample = lambda: idx  # fix the draw for this forward
    y = layer(torch.randn(2, 2, 3, 5, 5))
    (y * torch.randn_like(y)).sum().backward()  # (a plain sum has zero gradient through BN)
    assert sum(layer.last_counts.values()) == 6
    for i, name in enumerate(layer.candidates):
        rows = (idx[idx // 6 == i] % 6).tolist()
        grad = layer.weights[name].grad
        hit = grad.flatten(1).abs().sum(1) > 0
        assert hit.nonzero().flatten().tolist() == rows


def test_bn_running_stats_update_only_sampled_channels():
    torch.manual_seed(2)
    layer = cl.SearchConv3d(2, 4, SPACE, mode="performance").train()
    idx = layer.sample()
    layer.sample = lambda: idx
    before_mean = layer.bn.running_mean.clone()
    before_var = layer.bn.running_var.clone()
    x = torch.randn(3, 2, 4, 5, 5)
    layer(x)
    other = torch.ones(12, dtype=torch.bool)
    other[idx] = False
    assert torch.equal(layer.bn.running_mean[other], before_mean[other])
    assert torch.equal(layer.bn.running_var[other], before_var[other])
    # the sampled ones moved exactly as nn.BatchNorm3d would move them (momentum 0.1)
    raw = torch.cat([single_filter(layer, x, int(j) // 4, int(j) % 4) for j in idx], 1)
    mean = raw.mean(dim=(0, 2, 3, 4))
    var = raw.var(dim=(0, 2, 3, 4), unbiased=True)
    torch.testing.assert_close(layer.bn.running_mean[idx], 0.9 * before_mean[idx] + 0.1 * mean)
    torch.testing.assert_close(layer.bn.running_var[idx], 0.9 * before_var[idx] + 0.1 * var)
    assert int(layer.bn.num_batches_tracked) == 1


def test_eval_uses_best_candidate_per_channel_with_running_stats():
    torch.manual_seed(3)
    layer = cl.SearchConv3d(2, 4, SPACE, mode="performance")
    with torch.no_grad():
        layer.bn.weight.copy_(torch.rand(12) + 0.1)
        layer.bn.bias.copy_(torch.randn(12))
        layer.bn.running_mean.copy_(torch.randn(12))
        layer.bn.running_var.copy_(torch.rand(12) + 0.5)
    layer.eval()
    x = torch.randn(2, 2, 3, 5, 5)
    y = layer(x)
    best = layer.importance().argmax(dim=0)  # (C_out,) sub-kernel per channel
    bn = layer.bn
    for c in range(4):
        i = int(best[c])
        j = i * 4 + c
        ref = (single_filter(layer, x, i, c) - bn.running_mean[j]) / torch.sqrt(
            bn.running_var[j] + bn.eps)
        torch.testing.assert_close(y[:, c : c + 1], ref * bn.weight[j] + bn.bias[j])
    torch.testing.assert_close(layer(x), y)  # deterministic


@pytest.mark.parametrize("training", [True, False])
def test_dense_and_grouped_paths_agree(training):
    torch.manual_seed(5)
    a = cl.SearchConv3d(3, 6, SPACE, stride=(1, 2, 2)).train(training)
    b = cl.SearchConv3d(3, 6, SPACE, stride=(1, 2, 2)).train(training)
    b.load_state_dict(a.state_dict())
    b.impl = "fast"
    idx = a.sample()
    a.sample = b.sample = lambda: idx
    x = torch.randn(2, 3, 4, 6, 5)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-5)
    (ya * ya).sum().backward()
    (yb * yb).sum().backward()
    for name in a.candidates:
        torch.testing.assert_close(a.weights[name].grad, b.weights[name].grad, rtol=1e-3,
                                   atol=1e-4)


@pytest.mark.parametrize("mode,impl", [("performance", "dense"), ("performance", "fast"),
                                       ("cost", "fast")])
def test_channels_last_input_gives_the_same_values_and_keeps_its_format(mode, impl):
    """A channels_last_3d input: the same output and gradients as NCDHW (up to rounding), the
    output and the gradient reaching the BN in channels_last_3d too (no mixed-format BN)."""
    torch.manual_seed(6)
    layer = cl.SearchConv3d(3, 6, SPACE, mode=mode, stride=(1, 2, 2))
    layer.impl = impl
    idx = layer.sample()
    layer.sample = lambda: idx
    x = torch.randn(2, 3, 4, 6, 5)
    results = {}
    for fmt in (torch.contiguous_format, torch.channels_last_3d):
        layer.zero_grad()
        xf = x.clone(memory_format=fmt).requires_grad_(True)
        y = layer(xf)
        assert y.is_contiguous(memory_format=fmt)
        (y * y).sum().backward()
        results[fmt] = (y.detach(), xf.grad, {n: w.grad.clone() for n, w in layer.weights.items()},
                        layer.bn.weight.grad.clone())
    (y0, gx0, gw0, gg0), (y1, gx1, gw1, gg1) = results.values()
    assert not y1.is_contiguous()  # really channels_last, not a format-ambiguous shape
    torch.testing.assert_close(y0, y1, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx0, gx1, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gg0, gg1, rtol=1e-4, atol=1e-4)
    for name in gw0:
        torch.testing.assert_close(gw0[name], gw1[name], rtol=1e-3, atol=1e-4)


def test_cost_mode_sums_candidates_after_bn():
    torch.manual_seed(4)
    layer = cl.SearchConv3d(2, 3, SPACE, mode="cost").eval()
    with torch.no_grad():
        layer.bn.weight.copy_(torch.randn(9))
    x = torch.randn(2, 2, 3, 4, 4)
    full = layer.bn(torch.cat([F.conv3d(x, w, None, 1, tuple(s // 2 for s in w.shape[2:]))
                               for w in (layer.weights[n] for n in layer.candidates)], 1))
    torch.testing.assert_close(layer(x), full.view(2, 3, 3, 3, 4, 4).sum(1))
    assert torch.allclose(cl.SearchConv3d(2, 3, SPACE, mode="cost").bn.weight, torch.tensor(1 / 3))


def test_supernet_replaces_searchable_convs_and_absorbs_bn():
    model = small_net()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    net = cl.supernet(model, SPACE, "cost")
    assert [n for n, _ in search_layers(net)] == ["0", "3"]
    assert isinstance(net[1], nn.Identity)  # absorbed: BN of conv "0"
    assert isinstance(net[5], nn.Conv3d)  # (1,3,3) conv is not searchable
    assert net.cakes_search["layers"] == {"0": "1", "3": None}
    assert net[0].mode == "cost" and net[3].stride == (2, 2, 2)
    # the caller's model is untouched
    assert isinstance(model[0], nn.Conv3d) and isinstance(model[1], nn.BatchNorm3d)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert net(torch.randn(2, 2, 4, 6, 6)).shape == (2, 3)
    with pytest.raises(ValueError, match="searchable"):
        cl.supernet(nn.Sequential(nn.Conv3d(2, 2, 1)), SPACE)
    with pytest.raises(ValueError, match="mode"):
        cl.supernet(model, SPACE, "fast")


@pytest.mark.parametrize("mode,share", [("performance", 1.0), ("cost", 1 / 3)])
def test_absorbed_bn_seeds_candidates(mode, share):
    model = small_net()
    with torch.no_grad():
        model[1].weight.copy_(torch.arange(1.0, 7.0))
        model[1].running_var.fill_(4.0)
    layer = cl.supernet(model, SPACE, mode)[0]
    torch.testing.assert_close(layer.bn.weight, torch.arange(1.0, 7.0).repeat(3) * share)
    assert torch.all(layer.bn.running_var == 4.0)


def test_sum_init_inherits_dense_weights():
    model = small_net()
    layer = cl.supernet(model, SPACE)[0]
    dense = model[0].weight
    torch.testing.assert_close(layer.weights["kxkxk"], dense)
    torch.testing.assert_close(layer.weights["1xkxk"], dense.sum(2, keepdim=True))
    torch.testing.assert_close(layer.weights["kx1x1"], dense.sum((3, 4), keepdim=True))


@pytest.mark.parametrize("mode", ["performance", "cost"])
def test_cakes_macs_follow_the_mode(mode):
    model = small_net()
    shape = (1, 2, 4, 6, 6)

    def searched(net):  # MACs of the two searched layers
        p = cl.profile(net, shape)
        return p.layer("0").macs + p.layer("3").macs

    got = searched(cl.supernet(model, SPACE, mode))
    if mode == "performance":  # untrained eval = round robin = the even split
        want = searched(cl.shrink(model, cl.Layout.uniform(model, SPACE)))
    else:  # every candidate runs: Σ over sub-kernels of a full-width group
        want = sum(searched(cl.shrink(model, {"0": {k: 6}, "3": {k: 8}})) for k in cl.SPACES[SPACE])
    assert got == want


# -- Conv–BN pairing by data flow ---------------------------------------------------------------
class Pairing(nn.Module):
    """Convs and BNs wired by ``kind``; ``traceable=False`` adds the data-dependent check many
    models have (torch.fx cannot trace it)."""

    def __init__(self, kind: str, traceable: bool):
        super().__init__()
        self.kind, self.traceable = kind, traceable
        self.conv1 = nn.Conv3d(2, 4, 3, padding=1, bias=False)
        if kind == "late":  # BNs registered after both convs
            self.conv2 = nn.Conv3d(4, 4, 3, padding=1, bias=False)
            self.bn1, self.bn2 = nn.BatchNorm3d(4), nn.BatchNorm3d(4)
        elif kind == "shared":  # one BN after two convs
            self.bn = nn.BatchNorm3d(4)
            self.conv2 = nn.Conv3d(4, 4, 3, padding=1, bias=False)
        else:  # "after_relu": conv -> ReLU -> BN;  "residual": bn(conv(x)) + conv(x)
            self.bn = nn.BatchNorm3d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.traceable and x.dim() != 5:
            raise ValueError("expected a 5D input")
        if self.kind == "late":
            return self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.kind == "shared":
            return self.bn(self.conv2(torch.relu(self.bn(self.conv1(x)))))
        if self.kind == "after_relu":
            return self.bn(nn.functional.relu(self.conv1(x), inplace=True))
        y = self.conv1(x)
        return self.bn(y) + y


def randomised(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 2.0)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


PAIRS = {"late": {"conv1": "bn1", "conv2": "bn2"}, "shared": {"conv1": None, "conv2": None},
         "after_relu": {"conv1": None}, "residual": {"conv1": None}}
X5 = (2, 2, 3, 5, 4)


@pytest.mark.parametrize("kind", list(PAIRS))
@pytest.mark.parametrize("how", ["fx", "hooks", "registration"])
def test_bn_pairing_follows_the_data_flow_and_never_normalises_twice(kind, how):
    model = randomised(Pairing(kind, traceable=how == "fx"))
    x = torch.randn(*X5)
    # a one-candidate space with sum init is the model's own conv: with the right BN absorbed
    # (and no BN applied twice or dropped) the supernet computes exactly what the model does
    net = cl.supernet(model, ["kxkxk"], example_input=x if how == "hooks" else None).eval()
    assert net.cakes_search["bn_pairing"] == how
    if how == "registration":  # the BN registered after conv1 is not (only) its BN here: the
        # registration-order guess is wrong, and the first forward says so
        with pytest.raises(ValueError, match=r"example_input=x"):
            net(x)
        with pytest.raises(ValueError, match=r"example_input=x"):  # and keeps saying so
            net(x)
        return
    assert net.cakes_search["layers"] == PAIRS[kind]
    for conv, bn in PAIRS[kind].items():
        if bn:
            assert isinstance(getattr(net, bn), nn.Identity)
            assert getattr(net, conv).source_bn == bn
    kept = [n for n, m in net.named_modules()  # the model's BNs still in the supernet
            if isinstance(m, nn.BatchNorm3d) and n.rpartition(".")[0] not in PAIRS[kind]]
    assert kept == ([] if kind == "late" else ["bn"])
    torch.testing.assert_close(net(x), model(x), rtol=1e-4, atol=1e-4)


def test_registration_order_guess_is_verified_once_then_dropped():
    class Checked(nn.Sequential):  # torch.fx cannot trace the input check
        def forward(self, x):
            if x.dim() != 5:
                raise ValueError("expected a 5D input")
            return super().forward(x)

    model = Checked(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU())
    net = cl.supernet(model, SPACE)
    assert net.cakes_search["bn_pairing"] == "registration"
    assert len(net._forward_pre_hooks) == 1
    net(torch.randn(*X5))
    assert len(net._forward_pre_hooks) == 0


def test_example_input_is_checked():
    with pytest.raises(ValueError, match="example_input"):
        cl.supernet(Pairing("late", traceable=False), SPACE, example_input="x")


def test_sync_batchnorm_is_refused_with_a_clear_error():
    model = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.SyncBatchNorm(4), nn.ReLU())
    with pytest.raises(ValueError, match=r"layer '0': .*SyncBatchNorm '1'.*absorb_bn=False"):
        cl.supernet(model, SPACE)
    net = cl.supernet(model, SPACE, absorb_bn=False)
    assert isinstance(net[1], nn.SyncBatchNorm) and net.cakes_search["layers"] == {"0": None}


def test_absorbed_bn_takes_the_conv_bias_into_its_running_mean():
    model = randomised(nn.Sequential(nn.Conv3d(2, 4, 3, padding=1, bias=True), nn.BatchNorm3d(4)))
    with torch.no_grad():
        model[0].bias.normal_(0.0, 3.0)
    net = cl.supernet(model, ["kxkxk"]).eval()
    x = torch.randn(*X5)
    torch.testing.assert_close(net(x), model(x), rtol=1e-4, atol=1e-4)


# -- CUDA (run where a GPU exists; skipped elsewhere) ---------------------------------------------
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("mode", ["performance", "cost"])
def test_search_and_derive_on_cuda(mode):
    model = small_net().cuda()
    batches = [(torch.randn(2, 2, 4, 6, 6, device="cuda"), torch.randint(0, 3, (2,), device="cuda"))
               for _ in range(2)]
    result = cl.run_search(model, batches, epochs=1, mode=mode, device="cuda", progress=False)
    net = result.supernet
    assert all(p.is_cuda for p in net.parameters())
    layout = cl.derive_layout(net, budget=0.5)
    cpu_net = cl.supernet(small_net(), SPACE, mode)
    cpu_net.load_state_dict({k: v.cpu() for k, v in net.state_dict().items()})
    cpu_net.eval()(torch.zeros(1, 2, 4, 6, 6))
    assert cl.derive_layout(cpu_net, budget=0.5) == layout  # the same choice off the GPU
    assert cl.shrink(model, layout)(batches[0][0]).is_cuda


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sparsity_step_under_autocast_and_a_grad_scaler_on_cuda(dtype):
    x = torch.randn(2, 2, 3, 5, 5, device="cuda")

    def step(how: str) -> torch.Tensor:
        torch.manual_seed(1)
        layer = cl.SearchConv3d(2, 4, SPACE, mode="cost").cuda()
        opt = torch.optim.SGD(layer.parameters(), lr=0.5)
        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**12, enabled=how != "fp32")
        with torch.autocast("cuda", dtype=dtype, enabled=how != "fp32"):
            loss = layer(x).float().square().mean()
        scaler.scale(loss).backward()
        if how == "unscale_first":
            scaler.unscale_(opt)
        cl.sparsity_step(layer, 0.3, scaler=scaler if how == "scaler" else None)
        scaler.step(opt)
        scaler.update()
        return layer.bn.weight.detach().float().cpu()

    with_scaler, unscaled_first = step("scaler"), step("unscale_first")
    torch.testing.assert_close(with_scaler, unscaled_first, rtol=1e-5, atol=1e-6)
    tol = 2e-2 if dtype is torch.bfloat16 else 5e-3
    torch.testing.assert_close(with_scaler, step("fp32"), rtol=tol, atol=tol)
