"""Inference copies (cakes_lite/deploy/inference.py): BatchNorm folded into the conv before it,
channels_last_3d throughout, kernel = stride up-sampling as one matrix product, plans pinned
in the network; outputs equal the model's in eval mode, the caller's model untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cakes_lite import CAKESConv3d, profile
from cakes_lite.deploy import network_tuning
from cakes_lite.deploy.inference import (_Conv3d, _replace_dense, _UpConv3d, fold_batchnorm,
                                         for_inference)
from cakes_lite.models import resnet3d_tiny, unet3d_tiny

pytestmark = pytest.mark.usefixtures("one_thread")  # fixture in conftest.py


def _trained_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so folding them is really tested."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.mark.parametrize("factory,builder,shape", [
    (resnet3d_tiny, "3d", (2, 3, 4, 16, 16)),
    (resnet3d_tiny, "cakes", (2, 3, 5, 16, 12)),
    (unet3d_tiny, "3d", (1, 1, 12, 8, 10)),
    (unet3d_tiny, "cakes:volume-all", (1, 1, 9, 8, 8)),
])
def test_for_inference_folds_every_bn_and_keeps_outputs(factory, builder, shape):
    model = _trained_bn(factory(builder=builder))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(shape)
    fast = for_inference(model)
    folded = [m for m in fast.modules() if isinstance(m, nn.BatchNorm3d)]
    assert not folded  # every BN of these networks follows a conv
    with torch.no_grad():
        want, got = model(x), fast(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    if got.dim() == 5:  # channels innermost (a crop of a channels_last_3d tensor where padded)
        assert got.stride(1) == 1
    # the caller's model is untouched (weights, BNs, mode)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert any(isinstance(m, nn.BatchNorm3d) for m in model.modules())


def test_fold_batchnorm_skips_a_conv_whose_output_is_also_used_elsewhere():
    class TwoUses(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = CAKESConv3d(2, {"kxkxk": 2, "1xkxk": 1}, bias=True)
            self.bn = nn.BatchNorm3d(3)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # y is read raw too: folding would change it

    model = _trained_bn(TwoUses())
    folded = fold_batchnorm(model)
    assert any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    x = torch.randn(1, 2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))
    with pytest.raises(ValueError, match="model: expected an nn.Module"):
        fold_batchnorm("resnet")


@pytest.mark.parametrize("kernel,bias,shape", [
    ((2, 2, 2), False, (1, 6, 3, 4, 5)),
    ((1, 2, 2), True, (2, 5, 4, 3, 2)),
    ((2, 3, 1), True, (3, 4, 2, 5, 3)),
])
def test_for_inference_runs_kernel_equals_stride_upsampling_as_one_matmul(kernel, bias, shape):
    up = nn.ConvTranspose3d(shape[1], 7, kernel, kernel, bias=bias)
    fast = for_inference(nn.Sequential(up))
    wrapped = [m for m in fast.modules() if isinstance(m, _UpConv3d)]
    assert len(wrapped) == 1
    x = torch.randn(shape)
    with torch.autograd.profiler.profile() as prof, torch.no_grad():
        got = fast(x)
    assert "aten::slow_conv_transpose3d" not in {e.name for e in prof.function_events}
    with torch.no_grad():
        torch.testing.assert_close(got, up(x), rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last_3d)
    # output_size= (the module's other call form) falls back to the module itself
    with torch.no_grad():
        size = [s * k for s, k in zip(shape[2:], kernel)]
        torch.testing.assert_close(wrapped[0](x, size), up(x, size))
    # what it does not cover keeps PyTorch's module (overlapping or padded kernels)
    for other in (nn.ConvTranspose3d(4, 4, 3, 2), nn.ConvTranspose3d(4, 4, 2, 2, padding=1),
                  nn.ConvTranspose3d(4, 4, 2, 2, groups=2)):
        assert not _UpConv3d.applies(other)


@pytest.mark.parametrize("factory,builder,shape", [
    (resnet3d_tiny, "cakes", (2, 3, 4, 16, 16)),
    (unet3d_tiny, "cakes:volume-2d", (1, 1, 8, 8, 8)),
])
def test_for_inference_with_example_pins_plans_in_the_network(factory, builder, shape):
    model = _trained_bn(factory(builder=builder))
    parent = _trained_bn(factory(builder="3d"))
    x = torch.randn(shape)
    fast = for_inference(model, example=x)
    layers = [m for m in fast.modules() if isinstance(m, (CAKESConv3d, _Conv3d))
              and hasattr(m, "split")]
    assert len(layers) == sum(isinstance(m, CAKESConv3d) for m in model.modules())
    for m in layers:  # pinned: a plan, or "dense" replaced by the plain conv it runs
        assert (m.plan is not None) if isinstance(m, CAKESConv3d) else m.last_plan == "dense"
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
    # profile still counts the wrapped convs of an inference copy (MACs of what runs)
    assert profile(for_inference(parent), x).macs == profile(parent, x).macs


def test_a_cakes_network_tuned_to_dense_everywhere_is_its_parent_network(monkeypatch):
    """Where every CAKES layer loses to its parent conv (timings faked so ``dense`` always
    wins), the tuned copy is the tuned 3D parent, call for call: the same modules in the same
    order, each conv with the parent's kernel shape, stride, padding and channels_last_3d
    weights. So a tuned CAKES network can only be slower than its tuned parent by noise."""
    def samples(steps, repeats=20, warmup=2, clock="wall", device=None, progress=None):
        out = {}
        for name, step in steps.items():
            step()
            ran = [m.last_plan for m in fast.modules() if isinstance(m, CAKESConv3d)]
            out[name] = [1.0 + sum(p != "dense" for p in ran)] * repeats
        return out

    monkeypatch.setattr(network_tuning, "interleaved_samples", samples)
    x = torch.randn(1, 3, 4, 16, 16)
    torch.manual_seed(0)
    model = _trained_bn(resnet3d_tiny(builder="cakes"))
    fast = for_inference(model)  # the fake timer reads the plans this copy ran
    network_tuning.tune_plans(fast, x)
    _replace_dense(fast)
    parent = for_inference(_trained_bn(resnet3d_tiny(builder="3d")))

    def calls(net):
        return [(type(m).__name__,) + ((tuple(m.conv.weight.shape), m.conv.stride,
                                        m.conv.padding, m.conv.weight.is_contiguous(
                                            memory_format=torch.channels_last_3d))
                                       if isinstance(m, _Conv3d) else ())
                for m in net.modules() if not list(m.children())]
    assert not any(isinstance(m, CAKESConv3d) for m in fast.modules())
    assert calls(fast) == calls(parent)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)


BIASED_CONVS = {
    "Conv3d": lambda: nn.Conv3d(3, 4, 3, padding=1, bias=True),
    "CAKESConv3d": lambda: CAKESConv3d(3, {"kxkxk": 2, "1xkxk": 1, "kx1x1": 1}, bias=True),
}


@pytest.mark.parametrize("conv", list(BIASED_CONVS))
def test_fold_batchnorm_keeps_the_conv_bias_and_epsilon(conv):
    """Adversarial statistics: running variances far below ε (so σ = sqrt(var + ε) is mostly ε)
    and a large bias of the conv itself, which the BN shifts and scales by γ/σ ≈ 30."""
    model = nn.Sequential(BIASED_CONVS[conv](), nn.BatchNorm3d(4, eps=1e-3), nn.ReLU()).double()
    bn = model[1]
    with torch.no_grad():
        model[0].bias.uniform_(-2.0, 2.0)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(1e-6, 1e-5)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in folded.modules())
    x = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        want = model(x)
        assert (want > 0).float().mean() > 0.2  # the ReLU lets enough through to compare
        torch.testing.assert_close(folded(x), want, rtol=1e-9, atol=1e-9)
