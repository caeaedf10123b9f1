"""AdaIN: the shared ops, the decoder, the pipeline and the training loss against the references.

The oracles restate naoto0804/pytorch-AdaIN (``net.decoder``, ``net.vgg[:31]``, ``function.py``,
``test.py``'s ``style_transfer``, ``Net.forward``) and xunhuang1995/AdaIN-style's ``-mask`` path, written
for single images exactly as the references do.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from styleengine.nn.adain_ops import (
    adaptive_instance_normalization,
    calc_mean_std,
    coral,
    masked_mean_std,
)
from styleengine.nn.vgg import NormalisedVGG
from styleengine_adain.config import CONTENT_WEIGHT, STYLE_WEIGHT
from styleengine_adain.importer import load_reference_adain, load_reference_decoder
from styleengine_adain.nets import AdaINDecoder, AdaINNet, learning_rate

# -- oracles -------------------------------------------------------------------------------------------


def reference_decoder() -> nn.Sequential:
    def c(i: int, o: int, relu: bool = True) -> list[nn.Module]:
        return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(i, o, (3, 3))] + ([nn.ReLU()] if relu else [])

    up = nn.UpsamplingNearest2d
    return nn.Sequential(
        *c(512, 256), up(scale_factor=2),
        *c(256, 256), *c(256, 256), *c(256, 256), *c(256, 128), up(scale_factor=2),
        *c(128, 128), *c(128, 64), up(scale_factor=2),
        *c(64, 64), *c(64, 3, relu=False),
    )


def reference_encoder() -> nn.Sequential:
    """``net.vgg[:31]``: the 1x1 conv, then reflection-padded convs up to relu4_1."""

    def c(i: int, o: int) -> list[nn.Module]:
        return [nn.ReflectionPad2d((1, 1, 1, 1)), nn.Conv2d(i, o, (3, 3)), nn.ReLU()]

    pool = [nn.MaxPool2d((2, 2), (2, 2), (0, 0), ceil_mode=True)]
    return nn.Sequential(
        nn.Conv2d(3, 3, (1, 1)), *c(3, 64), *c(64, 64), *pool, *c(64, 128), *c(128, 128), *pool,
        *c(128, 256), *c(256, 256), *c(256, 256), *c(256, 256), *pool, *c(256, 512),
    )


def ref_calc_mean_std(feat, eps=1e-5):
    n, c = feat.size()[:2]
    feat_var = feat.view(n, c, -1).var(dim=2) + eps
    return feat.view(n, c, -1).mean(dim=2).view(n, c, 1, 1), feat_var.sqrt().view(n, c, 1, 1)


def ref_adain(content_feat, style_feat):
    size = content_feat.size()
    style_mean, style_std = ref_calc_mean_std(style_feat)
    content_mean, content_std = ref_calc_mean_std(content_feat)
    normalized = (content_feat - content_mean.expand(size)) / content_std.expand(size)
    return normalized * style_std.expand(size) + style_mean.expand(size)


def ref_style_transfer(vgg, decoder, content, style, alpha=1.0, interpolation_weights=None):
    content_f = vgg(content)
    style_f = vgg(style)
    if interpolation_weights:
        _, c, h, w = content_f.size()
        feat = torch.zeros(1, c, h, w)
        base_feat = ref_adain(content_f, style_f)
        for i, wt in enumerate(interpolation_weights):
            feat = feat + wt * base_feat[i:i + 1]
        content_f = content_f[0:1]
    else:
        feat = ref_adain(content_f, style_f)
    feat = feat * alpha + content_f * (1 - alpha)
    return decoder(feat)


def ref_coral(source, target):
    def flat_mean_std(feat):
        f = feat.view(3, -1)
        return f, f.mean(dim=-1, keepdim=True), f.std(dim=-1, keepdim=True)

    def mat_sqrt(x):
        u, d, v = torch.svd(x)
        return torch.mm(torch.mm(u, d.pow(0.5).diag()), v.t())

    sf, sm, ss = flat_mean_std(source)
    sn = (sf - sm.expand_as(sf)) / ss.expand_as(sf)
    scov = torch.mm(sn, sn.t()) + torch.eye(3)
    tf, tm, ts = flat_mean_std(target)
    tn = (tf - tm.expand_as(tf)) / ts.expand_as(tf)
    tcov = torch.mm(tn, tn.t()) + torch.eye(3)
    transfer = torch.mm(mat_sqrt(tcov), torch.mm(torch.inverse(mat_sqrt(scov)), sn))
    return (transfer * ts.expand_as(sn) + tm.expand_as(sn)).view(source.size())


def image(h: int = 32, w: int = 32, n: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def n_params(m: nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad or not trainable)


@pytest.fixture(scope="module")
def ref_nets():
    torch.manual_seed(0)
    return reference_encoder().eval(), reference_decoder().eval()


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory, ref_nets):
    """``vgg_normalised.pth`` (full depth, the deeper layers random) and ``decoder.pth`` as the reference ships."""
    enc, dec = ref_nets
    root = tmp_path_factory.mktemp("adain_models")
    with torch.device("meta"):
        deeper = {k: v for k, v in NormalisedVGG().state_dict().items() if int(k.split(".")[0]) >= 31}
    vgg_state = dict(enc.state_dict())
    vgg_state.update({k: torch.zeros(1).expand(v.shape) for k, v in deeper.items()})  # stride-0: a few bytes
    torch.save(vgg_state, root / "vgg_normalised.pth")
    torch.save(dec.state_dict(), root / "decoder.pth")
    return root / "vgg_normalised.pth", root / "decoder.pth"


@pytest.fixture(scope="module")
def net(checkpoint_files) -> AdaINNet:
    return load_reference_adain(*checkpoint_files).eval()


# -- shared ops ----------------------------------------------------------------------------------------


def test_calc_mean_std_and_adain_match_hand_computation():
    g = torch.Generator().manual_seed(3)
    content = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    style = torch.randn(2, 3, 6, 3, generator=g, dtype=torch.float64) * 3 + 1
    mean, std = calc_mean_std(content)
    out = adaptive_instance_normalization(content, style)
    for n in range(2):
        for c in range(3):
            x = content[n, c].flatten().tolist()
            y = style[n, c].flatten().tolist()
            mx, my = sum(x) / len(x), sum(y) / len(y)
            sx = ((sum((v - mx) ** 2 for v in x) / (len(x) - 1)) + 1e-5) ** 0.5  # unbiased + eps
            sy = ((sum((v - my) ** 2 for v in y) / (len(y) - 1)) + 1e-5) ** 0.5
            assert mean[n, c, 0, 0].item() == pytest.approx(mx, abs=1e-12)
            assert std[n, c, 0, 0].item() == pytest.approx(sx, abs=1e-12)
            expected = torch.tensor([(v - mx) / sx * sy + my for v in x], dtype=torch.float64)
            torch.testing.assert_close(out[n, c].flatten(), expected, atol=1e-12, rtol=0)


def test_adain_equals_reference_and_broadcasts_a_single_style():
    g = torch.Generator().manual_seed(4)
    content, style = torch.randn(3, 8, 5, 5, generator=g), torch.randn(1, 8, 7, 4, generator=g)
    assert torch.equal(adaptive_instance_normalization(content[:1], style), ref_adain(content[:1], style))
    batched = adaptive_instance_normalization(content, style)
    for i in range(3):
        torch.testing.assert_close(batched[i:i + 1], ref_adain(content[i:i + 1], style))
    with pytest.raises(ValueError, match="same channel count"):
        adaptive_instance_normalization(content, torch.randn(2, 8, 3, 3))


def test_masked_mean_std_equals_gathered_statistics():
    g = torch.Generator().manual_seed(5)
    feat = torch.randn(2, 4, 6, 6, generator=g)
    mask = torch.rand(2, 1, 6, 6, generator=g) > 0.4
    mean, std = masked_mean_std(feat, mask)
    for n in range(2):
        cols = feat[n].reshape(4, -1)[:, mask[n].flatten()]
        ref_mean, ref_std = ref_calc_mean_std(cols.reshape(1, 4, -1, 1))
        torch.testing.assert_close(mean[n:n + 1], ref_mean)
        torch.testing.assert_close(std[n:n + 1], ref_std)


def colourful(h: int, w: int, seed: int) -> torch.Tensor:
    """An image with correlated channels (a random colour mix of smooth noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w),
                                           mode="bilinear", align_corners=False)[0]
    mix = torch.rand(3, 3, generator=g) + torch.eye(3)
    return (mix @ base.reshape(3, -1)).reshape(3, h, w) / 3


def test_coral_matches_reference_and_target_statistics():
    source, target = colourful(64, 64, 1), colourful(48, 80, 2)
    out = coral(source, target)
    assert out.shape == source.shape
    torch.testing.assert_close(out, ref_coral(source, target), atol=1e-5, rtol=1e-5)
    flat_out, flat_tgt = out.reshape(3, -1), target.reshape(3, -1)
    torch.testing.assert_close(flat_out.mean(1), flat_tgt.mean(1), atol=1e-3, rtol=0)
    torch.testing.assert_close(torch.cov(flat_out), torch.cov(flat_tgt), atol=1e-3, rtol=0)
    assert not torch.allclose(torch.cov(source.reshape(3, -1)), torch.cov(flat_tgt), atol=1e-3)


def test_coral_is_batch_aware():
    sources = torch.stack([colourful(32, 32, s) for s in (1, 2)])
    targets = torch.stack([colourful(40, 24, s) for s in (3, 4)])
    out = coral(sources, targets)
    for i in range(2):
        torch.testing.assert_close(out[i], coral(sources[i], targets[i]), atol=1e-5, rtol=1e-5)
    shared = coral(sources, targets[:1])
    torch.testing.assert_close(shared[1], coral(sources[1], targets[0]), atol=1e-5, rtol=1e-5)
    assert coral(sources.half(), targets.half()).dtype == torch.float16


# -- networks ------------------------------------------------------------------------------------------


def test_parameter_counts():
    with torch.device("meta"):
        assert n_params(AdaINDecoder()) == n_params(reference_decoder()) == 3_505_219
        adain = AdaINNet()
        assert n_params(adain.encoder) == 3_505_740
        assert n_params(adain, trainable=True) == 3_505_219  # the encoder is frozen


def test_decoder_keys_and_reference_checkpoint(checkpoint_files, ref_nets):
    _, dec = ref_nets
    assert list(AdaINDecoder().state_dict()) == list(dec.state_dict())
    decoder = load_reference_decoder(checkpoint_files[1])
    feat = torch.randn(1, 512, 3, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = decoder(feat)
        assert out.shape == (1, 3, 24, 32)
        assert torch.equal(out, dec(feat))


def test_encoder_from_full_vgg_normalised(net, ref_nets):
    enc, _ = ref_nets
    assert len(net.encoder) == 31 and not any(p.requires_grad for p in net.encoder.parameters())
    x = image(24, 24)
    with torch.no_grad():
        assert torch.equal(net.encode(x), enc(x))


def test_forward_equals_reference_style_transfer(net, ref_nets):
    enc, dec = ref_nets
    content, style = image(32, 32, seed=1), image(40, 24, seed=2)
    with torch.no_grad():
        for alpha in (1.0, 0.6):
            assert torch.equal(net(content, style, alpha), ref_style_transfer(enc, dec, content, style, alpha))


def test_alpha_zero_is_the_reconstruction_path(net):
    content, style = image(32, 32, seed=1), image(32, 32, seed=2)
    with torch.no_grad():
        assert torch.equal(net(content, style, alpha=0.0), net.decoder(net.encoder(content)))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        net(content, style, alpha=1.5)


def test_batched_forward_with_shared_style_and_per_sample_alpha(net):
    content, style = image(32, 32, n=2, seed=1), image(24, 24, seed=2)
    with torch.no_grad():
        out = net(content, style, alpha=torch.tensor([1.0, 0.3]))
        torch.testing.assert_close(out[:1], net(content[:1], style, 1.0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1:], net(content[1:], style, 0.3), atol=1e-5, rtol=1e-5)


def test_interpolation(net, ref_nets):
    enc, dec = ref_nets
    content, s1, s2 = image(32, 32, seed=1), image(32, 32, seed=2), image(32, 32, seed=3)
    with torch.no_grad():
        assert torch.equal(net.style_transfer_multi(content, [s1], [1.0]), net(content, s1))
        ours = net.style_transfer_multi(content, [s1, s2], [1, 3], alpha=0.8)
        ref = ref_style_transfer(enc, dec, content.expand(2, -1, -1, -1), torch.cat([s1, s2]), 0.8, [0.25, 0.75])
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        stacked = net.style_transfer_multi(content, torch.cat([s1, s2]), torch.tensor([0.25, 0.75]), alpha=0.8)
        torch.testing.assert_close(stacked, ours, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="2 style"):
        net.style_transfer_multi(content, [s1, s2], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        net.style_transfer_multi(content, [s1, s2], [1.0, -1.0])


def lua_masked_target(content_f, fg_f, bg_f, mask):
    """test.lua's spatial control for one image: gather each region's columns, AdaIN them, scatter back."""
    c = content_f.shape[1]
    view = content_f[0].reshape(c, -1)
    flat = mask.flatten()
    target = torch.zeros_like(view)
    for region, style_f in ((flat, fg_f), (~flat, bg_f)):
        cols = view[:, region].reshape(1, c, -1, 1)
        target[:, region] = ref_adain(cols, style_f).reshape(c, -1)
    return target.reshape_as(content_f)


def test_spatial_mask(net):
    content, fg, bg = image(32, 32, seed=1), image(32, 32, seed=2), image(32, 32, seed=3)
    mask = torch.zeros(32, 32)
    mask[:, :20] = 1  # left part foreground: columns 0-2 of the 4x4 relu4_1 grid after nearest resizing
    with torch.no_grad():
        ours = net.style_transfer_masked(content, fg, bg, mask, alpha=0.9)
        cf = net.encode(content)
        small = torch.nn.functional.interpolate(mask[None, None], size=cf.shape[-2:], mode="nearest")[0, 0] > 0.5
        target = lua_masked_target(cf, net.encode(fg), net.encode(bg), small)
        torch.testing.assert_close(ours, net.decoder(target * 0.9 + cf * 0.1), atol=1e-5, rtol=1e-5)
        everywhere = net.style_transfer_masked(content, fg, bg, torch.ones(32, 32))
        torch.testing.assert_close(everywhere, net(content, fg), atol=1e-5, rtol=1e-5)


def reference_loss(enc, dec, content, style):
    """The reference ``Net.forward`` (training)."""
    bounds = [(0, 4), (4, 11), (11, 18), (18, 31)]

    def with_intermediate(x):
        feats = []
        for a, b in bounds:
            x = enc[a:b](x)
            feats.append(x)
        return feats

    mse = nn.MSELoss()
    style_feats = with_intermediate(style)
    t = ref_adain(enc(content), style_feats[-1])
    g_t_feats = with_intermediate(dec(t))
    loss_c = mse(g_t_feats[-1], t)
    loss_s = 0
    for out_f, style_f in zip(g_t_feats, style_feats):
        (om, os), (sm, ss) = ref_calc_mean_std(out_f), ref_calc_mean_std(style_f)
        loss_s = loss_s + mse(om, sm) + mse(os, ss)
    return loss_c, loss_s


def test_training_loss_equals_reference_and_trains_only_the_decoder(net, ref_nets):
    enc, dec = ref_nets
    content, style = image(32, 32, n=2, seed=5), image(32, 32, n=2, seed=6)
    loss_c, loss_s = net.loss(content, style)
    with torch.no_grad():
        ref_c, ref_s = reference_loss(enc, dec, content, style)
    torch.testing.assert_close(loss_c, ref_c)
    torch.testing.assert_close(loss_s, ref_s)
    net.zero_grad()
    (CONTENT_WEIGHT * loss_c + STYLE_WEIGHT * loss_s).backward()
    assert all(p.grad is not None for p in net.decoder.parameters())
    assert all(p.grad is None for p in net.encoder.parameters())
    net.zero_grad()
    assert (CONTENT_WEIGHT, STYLE_WEIGHT) == (1.0, 10.0)
    assert learning_rate(0) == 1e-4 and learning_rate(20_000) == pytest.approx(1e-4 / 2)


def test_decoder_importer_errors(checkpoint_files, ref_nets):
    with pytest.raises(ValueError, match="looks like the VGG encoder"):
        load_reference_decoder(checkpoint_files[0])
    state = dict(ref_nets[1].state_dict())
    state.pop("28.bias")
    state["29.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \[28.bias\]; unexpected keys \[29.weight\]"):
        load_reference_decoder(state)


def test_encoder_must_reach_relu4_1():
    with torch.device("meta"), pytest.raises(ValueError, match="relu4_1"):
        AdaINNet(encoder=NormalisedVGG(upto="relu3_1"))
