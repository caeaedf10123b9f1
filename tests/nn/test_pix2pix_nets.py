"""Tests for the shared pix2pix / CycleGAN networks in ``styleengine.nn``.

Architectures are checked against the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix)
by parameter counts derived by hand below and by state-dict key names; everything that runs a forward
pass uses small ``ngf`` so the module stays fast on 2 CPU cores.
"""

from __future__ import annotations

import copy
import io
import math
import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from styleengine.nn import (
    CheckpointMismatchError,
    GANLoss,
    MaskDropout,
    NLayerDiscriminator,
    PerSampleBatchNorm2d,
    ResnetGenerator,
    UnetGenerator,
    convert_batchnorm_to_per_sample,
    define_D,
    define_G,
    describe_architecture,
    dropout_mask_shapes,
    get_norm_layer,
    gradient_penalty,
    init_weights,
    load_into,
    load_reference_state_dict,
    make_dropout_masks,
    patch_instance_norm_state_dict,
    use_bias,
)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --------------------------------------------------------------------------------------------------
# Parameter counts, derived by hand from the reference architecture.
#
# conv(i, o, k, bias) = i*o*k*k (+ o);  a BatchNorm over c channels adds 2c (weight + bias); instance
# norm (affine=False) adds nothing.  Bias rule: convs before a norm have a bias only with instance norm;
# the output conv of every generator/discriminator always has one.
#
# U-Net (all convs 4x4), per block with outer channels O and inner channels I:
#   outermost: down conv(in_nc, ngf, bias=b) + up convT(2*ngf, out_nc, bias=True)
#   middle:    down conv(O, I, b) + BN(I) + up convT(2I, O, b) + BN(O)
#   innermost: down conv(8ngf, 8ngf, b) + up convT(8ngf, 8ngf, b) + BN(8ngf)    (no down-norm)
# unet_256 (ngf 64, batch, 3 -> 3):
#   outermost         3*64*16                 + 128*3*16 + 3                =      9,219
#   64 <-> 128        64*128*16 + 256         + 256*64*16 + 128             =    393,600
#   128 <-> 256       128*256*16 + 512        + 512*128*16 + 256            =  1,573,632
#   256 <-> 512       256*512*16 + 1024       + 1024*256*16 + 512           =  6,292,992
#   3 x 512 <-> 512   3 * (512*512*16 + 1024  + 1024*512*16 + 1024)         = 37,754,880
#   innermost         512*512*16              + 512*512*16 + 1024           =  8,389,632
#   total                                                                   = 54,413,955
# unet_128 has one 512 <-> 512 middle block fewer: 54,413,955 - 12,584,960 = 41,828,995.
#
# ResNet generator (ngf 64, 3 -> 3), instance norm (all convs biased, no norm parameters):
#   7x7 in        3*64*49 + 64          =      9,472
#   down 1, 2     64*128*9 + 128  +  128*256*9 + 256             =    369,024
#   block         2 * (256*256*9 + 256) = 1,180,160   (x9 = 10,621,440; x6 = 7,080,960)
#   up 1, 2       256*128*9 + 128  +  128*64*9 + 64              =    368,832
#   7x7 out       64*3*49 + 3           =      9,411
#   resnet_9blocks: 11,378,179 (the figure CycleGAN's logs print for netG); resnet_6blocks: 7,837,699
# with batch norm: convs lose their bias (-(64+128+256+18*256+128+64) for 9 blocks) and each norm adds
# 2c: resnet_9blocks 11,383,427, resnet_6blocks 7,841,411.
#
# PatchGAN "basic" (n_layers 3, ndf 64, 4x4 convs): conv(in, 64, bias) + conv(64,128)+N + conv(128,256)+N
# + conv(256,512, stride 1)+N + conv(512, 1, bias):
#   input 3, instance:  3136 + 131,200 + 524,544 + 2,097,664 + 8,193 = 2,764,737 (CycleGAN's netD)
#   input 6, batch:     6208 + 131,328 + 524,800 + 2,098,176 + 8,193 = 2,768,705 (pix2pix's netD: A|B)
# PixelGAN (1x1): conv(in, 64, bias) + conv(64, 128) + N + conv(128, 1)   (bias rule on both):
#   input 6, batch:     448 + 8,192 + 256 + 128 = 9,024
# --------------------------------------------------------------------------------------------------


def _conv(i: int, o: int, k: int, bias: bool) -> int:
    return i * o * k * k + (o if bias else 0)


def hand_unet_params(num_downs: int, ngf: int, in_nc: int, out_nc: int, norm: str) -> int:
    b = norm == "instance"
    bn = (lambda c: 2 * c) if norm == "batch" else (lambda c: 0)
    total = _conv(in_nc, ngf, 4, b) + _conv(2 * ngf, out_nc, 4, True)
    for outer, inner in [(ngf, 2 * ngf), (2 * ngf, 4 * ngf), (4 * ngf, 8 * ngf)] + [
        (8 * ngf, 8 * ngf)
    ] * (num_downs - 5):
        total += _conv(outer, inner, 4, b) + bn(inner) + _conv(2 * inner, outer, 4, b) + bn(outer)
    c = 8 * ngf
    return total + _conv(c, c, 4, b) + _conv(c, c, 4, b) + bn(c)


def hand_resnet_params(n_blocks: int, ngf: int, in_nc: int, out_nc: int, norm: str) -> int:
    b = norm == "instance"
    bn = (lambda c: 2 * c) if norm == "batch" else (lambda c: 0)
    total = _conv(in_nc, ngf, 7, b) + bn(ngf)
    total += _conv(ngf, 2 * ngf, 3, b) + bn(2 * ngf) + _conv(2 * ngf, 4 * ngf, 3, b) + bn(4 * ngf)
    total += n_blocks * 2 * (_conv(4 * ngf, 4 * ngf, 3, b) + bn(4 * ngf))
    total += _conv(4 * ngf, 2 * ngf, 3, b) + bn(2 * ngf) + _conv(2 * ngf, ngf, 3, b) + bn(ngf)
    return total + _conv(ngf, out_nc, 7, True)


@pytest.mark.parametrize(
    ("net_g", "norm", "expected"),
    [
        ("unet_256", "batch", 54_413_955),
        ("unet_128", "batch", 41_828_995),
        ("resnet_9blocks", "batch", 11_383_427),
        ("resnet_6blocks", "batch", 7_841_411),
        ("resnet_9blocks", "instance", 11_378_179),
        ("resnet_6blocks", "instance", 7_837_699),
        ("unet_256", "instance", hand_unet_params(8, 64, 3, 3, "instance")),
        ("unet_256", "none", hand_unet_params(8, 64, 3, 3, "none")),
    ],
)
def test_generator_parameter_counts(net_g: str, norm: str, expected: int) -> None:
    if net_g.startswith("unet"):
        hand = hand_unet_params(8 if net_g == "unet_256" else 7, 64, 3, 3, norm)
    else:
        hand = hand_resnet_params(9 if "9" in net_g else 6, 64, 3, 3, norm)
    assert hand == expected
    assert n_params(define_G(3, 3, 64, net_g, norm=norm)) == expected


@pytest.mark.parametrize(
    ("net_d", "input_nc", "norm", "expected"),
    [
        ("basic", 3, "instance", 2_764_737),
        ("basic", 6, "batch", 2_768_705),
        ("pixel", 6, "batch", 9_024),
    ],
)
def test_discriminator_parameter_counts(net_d: str, input_nc: int, norm: str, expected: int) -> None:
    assert n_params(define_D(input_nc, 64, net_d, norm=norm)) == expected


# --------------------------------------------------------------------------------------------------
# State-dict key names


def reference_unet_keys(num_downs: int, norm: str = "batch") -> list[str]:
    """The reference U-Net's state-dict keys, generated from its nesting rule independently of ours."""
    inst = norm == "instance"
    stats = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    norm_keys = (lambda p: [f"{p}.{s}" for s in stats]) if norm == "batch" else (lambda p: [])
    conv = (lambda p, bias: [f"{p}.weight"] + ([f"{p}.bias"] if bias else []))

    def block(prefix: str, level: int) -> list[str]:
        m = f"{prefix}.model"
        if level == 0:
            return conv(f"{m}.0", inst) + block(f"{m}.1", 1) + conv(f"{m}.3", True)
        if level == num_downs - 1:
            return conv(f"{m}.1", inst) + conv(f"{m}.3", inst) + norm_keys(f"{m}.4")
        return (
            conv(f"{m}.1", inst)
            + norm_keys(f"{m}.2")
            + block(f"{m}.3", level + 1)
            + conv(f"{m}.5", inst)
            + norm_keys(f"{m}.6")
        )

    return block("model", 0)


@pytest.mark.parametrize(("net_g", "num_downs"), [("unet_256", 8), ("unet_128", 7)])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet_state_dict_keys_match_reference(net_g: str, num_downs: int, norm: str) -> None:
    keys = list(define_G(3, 3, 4, net_g, norm=norm).state_dict())
    assert keys == reference_unet_keys(num_downs, norm)
    if norm == "batch":
        assert keys[0] == "model.model.0.weight"
        assert keys[1] == "model.model.1.model.1.weight"
        assert keys[-2:] == ["model.model.3.weight", "model.model.3.bias"]


def test_resnet_and_discriminator_keys_match_reference() -> None:
    keys = list(define_G(3, 3, 4, "resnet_9blocks", norm="instance", use_dropout=False).state_dict())
    assert keys[:4] == ["model.1.weight", "model.1.bias", "model.4.weight", "model.4.bias"]
    assert "model.10.conv_block.1.weight" in keys and "model.18.conv_block.5.bias" in keys
    assert keys[-2:] == ["model.26.weight", "model.26.bias"]
    # dropout takes a slot in the block's Sequential, shifting the second conv (as in the reference)
    keys = list(define_G(3, 3, 4, "resnet_6blocks", norm="batch", use_dropout=True).state_dict())
    assert "model.10.conv_block.6.weight" in keys and keys[-1] == "model.23.bias"
    keys = list(define_D(6, 4, "basic").state_dict())
    assert keys[:3] == ["model.0.weight", "model.0.bias", "model.2.weight"]
    assert "model.3.running_mean" in keys and keys[-2:] == ["model.11.weight", "model.11.bias"]
    keys = list(define_D(6, 4, "pixel").state_dict())
    assert keys[:3] == ["net.0.weight", "net.0.bias", "net.2.weight"]
    assert keys[-1] == "net.5.weight"


def test_bias_rule() -> None:
    assert use_bias(get_norm_layer("instance")) and use_bias(nn.InstanceNorm2d)
    assert not use_bias(get_norm_layer("batch")) and not use_bias(nn.BatchNorm2d)
    assert not use_bias(get_norm_layer("none"))  # the reference's rule: bias only for instance norm
    for norm, expect_bias in [("batch", False), ("instance", True), ("none", False)]:
        g = define_G(3, 3, 4, "unet_128", norm=norm)
        assert (g.model.model[1].model[1].bias is not None) is expect_bias  # a down-conv
        assert g.model.model[3].bias is not None  # output conv: always biased
        d = define_D(6, 4, "basic", norm=norm)
        assert (d.model[2].bias is not None) is expect_bias
    bn = get_norm_layer("batch")(8)
    assert bn.affine and bn.track_running_stats
    inorm = get_norm_layer("instance")(8)
    assert not inorm.affine and not inorm.track_running_stats
    assert isinstance(get_norm_layer("none")(8), nn.Identity)


def test_dropout_placement_matches_reference() -> None:
    g = define_G(3, 3, 4, "unet_256", use_dropout=True)
    # the three ngf*8 blocks around the innermost one end with Dropout(0.5), nothing else has one;
    # module order visits a block's nested blocks before its own trailing dropout: innermost first
    paths = [name for name, m in g.named_modules() if isinstance(m, nn.Dropout)]
    assert paths == [
        "model.model.1.model.3.model.3.model.3.model.3.model.3.model.7",
        "model.model.1.model.3.model.3.model.3.model.3.model.7",
        "model.model.1.model.3.model.3.model.3.model.7",
    ]
    assert all(m.p == 0.5 for m in g.modules() if isinstance(m, nn.Dropout))
    plain = define_G(3, 3, 4, "unet_256", use_dropout=False)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())


def test_bad_names_raise_value_error() -> None:
    with pytest.raises(ValueError, match=r"'unet_512'.*unet_256.*resnet_6blocks"):
        define_G(3, 3, 8, "unet_512")
    with pytest.raises(ValueError, match=r"'patch'.*basic.*n_layers.*pixel"):
        define_D(3, 8, "patch")
    with pytest.raises(ValueError, match=r"'group'.*batch.*instance.*none"):
        get_norm_layer("group")
    with pytest.raises(ValueError, match=r"'uniform'.*normal.*orthogonal"):
        init_weights(nn.Conv2d(1, 1, 1), "uniform")
    with pytest.raises(ValueError, match=r"'hinge'"):
        GANLoss("hinge")
    with pytest.raises(ValueError, match=r"'circular'.*reflect"):
        ResnetGenerator(3, 3, 4, padding_type="circular")


# --------------------------------------------------------------------------------------------------
# Reference checkpoints


def _randomise(net: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                shift = 0.5 if name.endswith("running_var") else -0.5  # variances stay positive
                t.copy_(torch.rand(t.shape, generator=g) + shift)
    return net


def _save(obj: object) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("variant", ["plain", "dataparallel", "wrapped", "pre04_batchnorm"])
def test_reference_checkpoint_loads_with_identical_outputs(variant: str) -> None:
    src = _randomise(define_G(3, 3, 4, "unet_128", norm="batch"), seed=1).eval()
    state = src.state_dict()  # an OrderedDict with _metadata, keys verified against the reference above
    assert isinstance(state, OrderedDict) and hasattr(state, "_metadata")
    if variant == "dataparallel":
        state = OrderedDict((f"module.{k}", v) for k, v in state.items())
    elif variant == "wrapped":
        state = {"state_dict": state, "epoch": 200}
    elif variant == "pre04_batchnorm":  # torch < 0.4 had no num_batches_tracked
        state = OrderedDict((k, v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    loaded = load_reference_state_dict(_save(state))
    assert type(loaded) is dict and all(not k.startswith("module.") for k in loaded)
    dst = load_into(define_G(3, 3, 4, "unet_128", norm="batch"), loaded).eval()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_pre04_instance_norm_checkpoint_loads() -> None:
    src = _randomise(define_G(3, 3, 4, "resnet_6blocks", norm="instance", use_dropout=False), seed=2)
    state = OrderedDict(src.state_dict())
    stale = 0
    for name, m in src.named_modules():  # what torch < 0.4 saved for every InstanceNorm2d
        if isinstance(m, nn.InstanceNorm2d):
            c = m.num_features
            state[f"{name}.running_mean"] = torch.rand(c)
            state[f"{name}.running_var"] = torch.rand(c) + 0.5
            state[f"{name}.num_batches_tracked"] = torch.tensor(7)
            stale += 3
    assert stale > 0
    loaded = load_reference_state_dict(_save(state))
    patched = patch_instance_norm_state_dict(loaded, src)
    assert len(loaded) - len(patched) == stale and set(patched) == set(src.state_dict())
    dst = define_G(3, 3, 4, "resnet_6blocks", norm="instance", use_dropout=False)
    with pytest.raises(CheckpointMismatchError):
        load_into(dst, loaded, patch_instance_norm=False)
    load_into(dst, loaded)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src.eval()(x), dst.eval()(x))


def test_mismatched_checkpoint_gives_clear_error() -> None:
    state = load_reference_state_dict(_save(define_G(3, 3, 4, "unet_128").state_dict()))
    with pytest.raises(CheckpointMismatchError) as info:
        load_into(define_G(3, 3, 4, "unet_256"), state)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.missing and err.unexpected  # one block level more, so the layouts diverge
    message = str(err)
    assert "missing key(s)" in message and err.missing[0] in message
    assert "(and " in message  # long lists are cut
    assert "looks like unet_128" in message and "module is unet_256" in message
    # the same architecture with another width: shape mismatches, also with strict=False
    shape_error = r"(?s)shape mismatch.*model\.model\.0\.weight.*ngf=4"
    with pytest.raises(CheckpointMismatchError, match=shape_error):
        load_into(define_G(3, 3, 8, "unet_128"), state, strict=False)
    # a discriminator checkpoint offered to a generator
    d_state = define_D(6, 4, "basic").state_dict()
    with pytest.raises(CheckpointMismatchError, match=r"basic PatchGAN.*input_nc=6"):
        load_into(define_G(3, 3, 4, "unet_128"), d_state)
    # nothing was loaded by a failed call
    target = define_G(3, 3, 4, "unet_128")
    before = copy.deepcopy(target.state_dict())
    bad = dict(state, extra=torch.zeros(1))
    with pytest.raises(CheckpointMismatchError, match="unexpected"):
        load_into(target, bad)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())
    load_into(target, bad, strict=False)  # non-strict ignores the extra key


def test_describe_architecture() -> None:
    assert describe_architecture(define_G(3, 3, 4, "unet_256").state_dict()) == (
        "unet_256 (input_nc=3, output_nc=3, ngf=4, norm=batch)"
    )
    assert describe_architecture(define_G(1, 2, 4, "resnet_9blocks", norm="instance").state_dict()) == (
        "resnet_9blocks (input_nc=1, output_nc=2, ngf=4, norm=instance)"
    )
    assert describe_architecture(define_D(3, 4, "pixel", norm="none").state_dict()).startswith(
        "pixel discriminator (input_nc=3, ndf=4, norm=none)"
    )
    assert describe_architecture({"foo.weight": torch.zeros(1)}) is None


def test_load_reference_state_dict_rejects_non_state_dicts(tmp_path) -> None:
    path = tmp_path / "net.pth"
    torch.save(nn.Conv2d(1, 1, 1), path)  # a pickled module: weights_only refuses to unpickle it
    with pytest.raises(ValueError, match="never unpickles code"):
        load_reference_state_dict(path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="expected a state dict, found list"):
        load_reference_state_dict(path)
    torch.save({"epoch": 3, "lr": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="'epoch'"):
        load_reference_state_dict(path)


# --------------------------------------------------------------------------------------------------
# Per-sample ("reference") inference


def _random_bn(c: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c, eps=1e-3)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return bn


def test_per_sample_batchnorm_equals_train_mode_batchnorm() -> None:
    bn = _random_bn(6, seed=3)
    ps = convert_batchnorm_to_per_sample(copy.deepcopy(bn))
    assert isinstance(ps, PerSampleBatchNorm2d) and isinstance(ps, nn.BatchNorm2d)
    assert list(ps.state_dict()) == list(bn.state_dict()) and ps.eps == 1e-3
    running = ps.running_mean.clone()
    x = torch.randn(4, 6, 5, 7) * 3 + 1
    ps.eval()
    with torch.no_grad():
        batched = ps(x)
        singles = []
        for i in range(4):
            ref = copy.deepcopy(bn).train()
            singles.append(ref(x[i : i + 1]))
            torch.testing.assert_close(ps(x[i : i + 1]), singles[-1], atol=1e-6, rtol=0)
        torch.testing.assert_close(batched, torch.cat(singles), atol=1e-6, rtol=0)
    assert torch.equal(ps.running_mean, running)  # never updated, in any mode
    ps.train()
    with torch.no_grad():
        torch.testing.assert_close(ps(x), batched, atol=0, rtol=0)
    # a 1x1 map has no per-sample statistics: fails like train-mode BN with batch size 1
    with pytest.raises(ValueError):
        bn.train()(torch.randn(1, 6, 1, 1))
    with pytest.raises(ValueError):
        ps(torch.randn(1, 6, 1, 1))


def test_convert_keeps_weights_and_shares_parameters() -> None:
    g = define_G(3, 3, 4, "unet_128")
    before = {k: v.clone() for k, v in g.state_dict().items()}
    params_before = [id(p) for p in g.parameters()]
    assert convert_batchnorm_to_per_sample(g) is g
    assert [id(p) for p in g.parameters()] == params_before
    norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(type(m) is PerSampleBatchNorm2d for m in norms)
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())


def test_unet_256_reference_mode_batch_equals_single_runs() -> None:
    """Reference semantics = train-mode BN with batch size 1 (dropout masks fixed so that it is
    deterministic).  At 256x256 the innermost block never normalises a 1x1 map, so this runs."""
    torch.manual_seed(0)
    g = define_G(3, 3, 4, "unet_256", use_dropout=True)
    x = torch.randn(4, 3, 256, 256)
    masks = make_dropout_masks(dropout_mask_shapes(g, 4, 256, 256), seeds=[11, 12, 13, 14])
    ref = copy.deepcopy(g).train()
    per_sample = convert_batchnorm_to_per_sample(g).eval()
    with torch.no_grad():
        singles = torch.cat([ref(x[i : i + 1], [m[i : i + 1] for m in masks]) for i in range(4)])
        torch.testing.assert_close(per_sample(x, masks), singles, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# Explicit dropout masks


@pytest.mark.parametrize(
    ("net_g", "size", "expected"),
    [
        ("unet_256", 256, [(2, 32, 4, 4), (2, 32, 8, 8), (2, 32, 16, 16)]),
        ("unet_128", 128, [(2, 32, 4, 4), (2, 32, 8, 8)]),
        ("resnet_6blocks", 30, [(2, 16, 8, 8)] * 6),
    ],
)
def test_dropout_mask_shapes_match_the_network(net_g: str, size: int, expected: list) -> None:
    g = define_G(3, 3, 4, net_g, use_dropout=True)
    assert dropout_mask_shapes(g, 2, size, size) == expected
    assert dropout_mask_shapes(net_g, 2, size, size, ngf=4) == expected
    assert dropout_mask_shapes(net_g, 2, size, size, ngf=4, use_dropout=False) == []
    dropouts = [m for m in g.modules() if isinstance(m, MaskDropout)]
    run_order: list[tuple[int, ...]] = []
    by_module: dict[int, tuple[int, ...]] = {}

    def record(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        run_order.append(tuple(args[0].shape))
        by_module[id(mod)] = tuple(args[0].shape)

    hooks = [m.register_forward_hook(record) for m in dropouts]
    with torch.no_grad():
        g.eval()(torch.zeros(2, 3, size, size))
    for h in hooks:
        h.remove()
    # mask order == module order == execution order
    assert [by_module[id(m)] for m in dropouts] == expected
    assert run_order == expected


def test_make_dropout_masks_values_and_independence() -> None:
    shapes = [(3, 8, 4, 4), (3, 8, 2, 2)]
    masks = make_dropout_masks(shapes, seeds=[5, 6, 7])
    assert [tuple(m.shape) for m in masks] == shapes
    values = torch.cat([m.flatten() for m in masks]).unique()
    assert values.tolist() == [0.0, 2.0]
    # image i's masks depend only on its seed: alone, or elsewhere in another batch
    alone = make_dropout_masks([(1, 8, 4, 4), (1, 8, 2, 2)], seeds=[6])
    other = make_dropout_masks([(2, 8, 4, 4), (2, 8, 2, 2)], seeds=[99, 6])
    for layer in range(2):
        assert torch.equal(masks[layer][1:2], alone[layer])
        assert torch.equal(masks[layer][1:2], other[layer][1:2])
    assert not torch.equal(masks[0][0], masks[0][1])
    keep = make_dropout_masks([(1, 64, 32, 32)], seeds=[0], p=0.25)[0]
    assert abs((keep > 0).float().mean().item() - 0.75) < 0.02
    assert math.isclose(keep.max().item(), 4 / 3, rel_tol=1e-6)
    with pytest.raises(ValueError):
        make_dropout_masks(shapes, seeds=[1, 2])
    with pytest.raises(ValueError):
        make_dropout_masks(shapes, seeds=[1, 2, 3], p=1.0)


@pytest.mark.parametrize("net_g", ["unet_128", "resnet_6blocks"])
def test_seeded_dropout_is_reproducible_and_batch_independent(net_g: str) -> None:
    torch.manual_seed(1)
    g = convert_batchnorm_to_per_sample(define_G(3, 3, 4, net_g, use_dropout=True)).eval()
    x = torch.randn(4, 3, 128, 128)
    seeds = [101, 202, 303, 404]
    shapes = dropout_mask_shapes(g, 4, 128, 128)
    with torch.no_grad():
        batched = g(x, make_dropout_masks(shapes, seeds))
        again = g(x, make_dropout_masks(shapes, seeds))
        assert torch.equal(batched, again)
        single_shapes = dropout_mask_shapes(g, 1, 128, 128)
        for i, seed in enumerate(seeds):
            one = g(x[i : i + 1], make_dropout_masks(single_shapes, [seed]))
            torch.testing.assert_close(one, batched[i : i + 1], atol=1e-6, rtol=0)
        other = g(x, make_dropout_masks(shapes, [1, 2, 3, 4]))
        assert not torch.allclose(other, batched)
        # no masks: plain nn.Dropout (identity in eval mode) and the mask count is checked
        plain = g(x)
        assert not torch.allclose(plain, batched)
        with pytest.raises(ValueError, match="dropout mask"):
            g(x, make_dropout_masks(shapes, seeds)[:-1])
        with pytest.raises(ValueError, match="dropout mask has shape"):
            g(x, make_dropout_masks(dropout_mask_shapes(g, 4, 256, 256), seeds))


def test_mask_dropout_without_mask_is_plain_dropout() -> None:
    d = MaskDropout(0.5)
    x = torch.ones(1000)
    torch.manual_seed(0)
    a = d.train()(x)
    torch.manual_seed(0)
    b = nn.Dropout(0.5).train()(x)
    assert torch.equal(a, b)
    assert torch.equal(d.eval()(x), x)
    mask = torch.zeros(1000)
    assert torch.equal(d.eval()(x, mask), mask)  # an explicit mask applies in eval mode too


# --------------------------------------------------------------------------------------------------
# Losses and initialisation


def test_gan_loss_values() -> None:
    p = torch.tensor([[-1.0, 0.0], [0.5, 2.0]])
    vals = p.flatten().tolist()
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected = {
        ("lsgan", True): mean([(v - 1) ** 2 for v in vals]),  # 4 + 1 + 0.25 + 1 -> 1.5625
        ("lsgan", False): mean([v**2 for v in vals]),  # 1.3125
        ("vanilla", True): mean([softplus(-v) for v in vals]),  # -log(sigmoid(v))
        ("vanilla", False): mean([softplus(v) for v in vals]),  # -log(1 - sigmoid(v))
        ("wgangp", True): -0.375,
        ("wgangp", False): 0.375,
    }
    assert math.isclose(expected[("lsgan", True)], 1.5625)
    for (mode, real), value in expected.items():
        assert math.isclose(GANLoss(mode)(p, real).item(), value, rel_tol=1e-6), (mode, real)
    smooth = GANLoss("lsgan", target_real=0.9)(p, True).item()
    assert math.isclose(smooth, mean([(v - 0.9) ** 2 for v in vals]), rel_tol=1e-6)
    target = GANLoss("vanilla").get_target_tensor(p, False)
    assert target.shape == p.shape and target.sum() == 0


def test_gradient_penalty() -> None:
    # D(x) = 3 x0 + 4 x1 per pixel: its gradient has norm 5 at every point, so the penalty is
    # lambda * (5 - 1)^2 = 160 whatever the interpolation.
    d = nn.Conv2d(2, 1, 1, bias=False)
    with torch.no_grad():
        d.weight.copy_(torch.tensor([3.0, 4.0]).view(1, 2, 1, 1))
    real, fake = torch.randn(3, 2, 1, 1), torch.randn(3, 2, 1, 1)
    for kind in ("real", "fake", "mixed"):
        penalty, grads = gradient_penalty(d, real, fake, "cpu", type=kind)
        assert math.isclose(penalty.item(), 160.0, rel_tol=1e-5)
        assert grads.shape == (3, 2) and penalty.requires_grad
    assert not real.requires_grad  # inputs are not modified in place
    assert gradient_penalty(d, real, fake, "cpu", lambda_gp=0.0) == (0.0, None)
    with pytest.raises(ValueError, match="'both'"):
        gradient_penalty(d, real, fake, "cpu", type="both")
    # a seeded interpolation is reproducible, and the penalty back-propagates into D
    patch = define_D(3, 4, "n_layers", n_layers_D=1, norm="none")
    real, fake = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    a, _ = gradient_penalty(patch, real, fake, "cpu", generator=torch.Generator().manual_seed(3))
    b, _ = gradient_penalty(patch, real, fake, "cpu", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.backward()
    assert patch.model[0].weight.grad is not None


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_weights_seeded_is_reproducible(init_type: str) -> None:
    def build(seed: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        net = define_G(3, 3, 4, "unet_128", init_type=init_type, generator=gen)
        return net.state_dict()

    a, b, c = build(7), build(7), build(8)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_init_weights_follows_reference_rules() -> None:
    net = NLayerDiscriminator(3, 32, 3, get_norm_layer("batch"))
    init_weights(net, "normal", 0.02, generator=torch.Generator().manual_seed(0))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    big = convs[3].weight  # 128*256*16 weights
    assert abs(big.mean().item()) < 1e-3 and abs(big.std().item() - 0.02) < 1e-3
    assert all(m.bias is None or not m.bias.any() for m in convs)
    assert convs[0].bias is not None  # the first conv keeps a (zeroed) bias
    all_w = torch.cat([m.weight for m in norms])
    assert abs(all_w.mean().item() - 1.0) < 0.01 and all(not m.bias.any() for m in norms)
    # the global RNG path is the reference's: same seed, same weights as an explicit generator
    g1 = define_G(3, 3, 4, "unet_128")
    torch.manual_seed(4)
    init_weights(g1, "normal")
    gen = torch.Generator().manual_seed(4)
    g2 = init_weights(define_G(3, 3, 4, "unet_128"), "normal", generator=gen)
    assert all(torch.equal(v, g2.state_dict()[k]) for k, v in g1.state_dict().items())


# --------------------------------------------------------------------------------------------------
# ONNX export of the reference-mode U-Net


class _MaskedUnet(nn.Module):
    """Export wrapper: the masks as separate named graph inputs."""

    def __init__(self, net: UnetGenerator) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, mask0: torch.Tensor, mask1: torch.Tensor) -> torch.Tensor:
        return self.net(x, [mask0, mask1])


def test_onnx_export_per_sample_unet_with_masks_matches_onnxruntime() -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(2)
    g = convert_batchnorm_to_per_sample(define_G(3, 3, 8, "unet_128", use_dropout=True)).eval()
    wrapper = _MaskedUnet(g).eval()
    x = torch.randn(2, 3, 128, 128)
    masks = make_dropout_masks(dropout_mask_shapes(g, 2, 128, 128), seeds=[1, 2])
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter warns that instance_norm uses input statistics: that is the point
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (x, *masks),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["x", "mask0", "mask1"],
            output_names=["y"],
            dynamic_axes={name: {0: "batch"} for name in ("x", "mask0", "mask1", "y")},
        )
    model = onnx.load_from_string(buf.getvalue())
    ops = {node.op_type for node in model.graph.node}
    assert "InstanceNormalization" in ops and "BatchNormalization" not in ops
    assert not ops & {"Dropout", "RandomUniform", "RandomUniformLike", "Bernoulli"}
    session = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    # a different batch size than the one traced, with fresh seeds
    x3 = torch.randn(3, 3, 128, 128)
    masks3 = make_dropout_masks(dropout_mask_shapes(g, 3, 128, 128), seeds=[7, 8, 9])
    (y,) = session.run(None, {"x": x3.numpy(), "mask0": masks3[0].numpy(), "mask1": masks3[1].numpy()})
    with torch.no_grad():
        expected = wrapper(x3, *masks3)
    torch.testing.assert_close(torch.from_numpy(y), expected, atol=1e-4, rtol=0)
