"""The ``adain`` Style: conformance, reference importers, the pipeline's semantics, caching, weights, pull."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from adain_helpers import SmallAdaIN, engine, smooth_image

from styleengine.nn.adain_ops import coral
from styleengine.preprocess import SizeError, to_tensor
from styleengine.runtime.base import SessionOptions
from styleengine.runtime.torch import TorchSession
from styleengine.style import StyleRequest, WeightsRequiredError
from styleengine.testing import StyleConformance
from styleengine_adain import AdaINStyle
from styleengine_adain.importer import load_reference_adain
from styleengine_adain.pipeline import working_size

EXACT = {"content_size": 0, "style_size": 0}  # sides are multiples of 8: no resampling anywhere


class TestAdaIN(StyleConformance):
    style_class = SmallAdaIN
    image_size = (32, 48)
    params = EXACT


def sessions(style):
    return {s.name: TorchSession(s, SessionOptions()) for s in style.graphs()}


def request(content, styles, mask=None, rid="r"):
    images = {"content": content, "style": list(styles)}
    if mask is not None:
        images["mask"] = mask
    return StyleRequest(images=images, id=rid)


def run(style, sess, content, styles, mask=None, **params):
    [res] = style.infer(sess, [request(content, styles, mask)], style.parse_config({**EXACT, **params}))
    return res


def as_image(t: torch.Tensor) -> np.ndarray:
    return t[0].clamp(0, 1).permute(1, 2, 0).numpy()


@pytest.fixture(scope="module")
def imported(reference_weights):
    """(style with the reference-layout weights imported, its torch sessions, the directly loaded AdaINNet)."""
    style = SmallAdaIN()
    style.load_weights(reference_weights)
    net = load_reference_adain(reference_weights / "vgg_normalised.pth", reference_weights / "decoder.pth").eval()
    return style, sessions(style), net


# -- declarations ----------------------------------------------------------------------------------------


def test_declaration():
    assert AdaINStyle.train_data == ("content", "style")
    fields = {f.name: f for f in AdaINStyle.inputs.images}
    assert fields["style"].multiple and not fields["mask"].required and fields["content"].required
    cfg = AdaINStyle.Config()
    assert (cfg.alpha, cfg.content_size, cfg.style_size, cfg.preserve_color, cfg.style_weights) == (1.0, 512, 512, False, None)
    for bad in ({"alpha": 1.5}, {"alpha": -0.1}, {"style_weights": [1, -1]}, {"style_weights": [0, 0]}, {"content_size": -1},
                {"style_weights": [float("inf")]}):
        with pytest.raises(ValueError):
            AdaINStyle.Config(**bad)
    enc, dec = AdaINStyle().graphs()
    assert [t.name for t in enc.inputs] == ["image"] and [t.name for t in enc.outputs] == ["features"]
    assert [t.name for t in dec.inputs] == ["features"] and [t.name for t in dec.outputs] == ["image"]
    feat = enc.outputs[0]
    assert feat.shape[2].div == 8 and feat.shape[2].dim.name == "height" and enc.dims["height"].multiple_of == 8
    assert dec.trt_profile()["features"] == ((1, 512, 8, 8), (1, 512, 64, 64), (4, 512, 128, 128))


def test_parameter_counts_of_the_style_modules():
    with torch.device("meta"):
        mods = AdaINStyle().build()
    assert sum(p.numel() for p in mods["encoder"].parameters()) == 3_505_740
    assert sum(p.numel() for p in mods["decoder"].parameters()) == 3_505_219


def test_working_size_rule():
    assert working_size(480, 640, 512, 64, 1024) == (512, 680)  # short side 512, long 682.7 -> 680
    assert working_size(37, 61, 0, 16, 64) == (40, 64)  # keep: each side rounded to a multiple of 8
    assert working_size(3000, 4000, 0, 64, 1024) == (768, 1024)  # long side capped at the graphs' max
    assert working_size(10, 10, 0, 64, 1024) == (64, 64)  # short side raised to the min
    assert working_size(512, 512, 512, 64, 1024) == (512, 512)


# -- reference weights -----------------------------------------------------------------------------------


def test_imported_reference_weights_match_the_direct_network_exactly(imported, images):
    style, sess, net = imported
    content, s = images["content"], images["style"]
    with torch.no_grad():
        for alpha in (1.0, 0.7):
            expected = as_image(net(to_tensor(content, (0, 1)), to_tensor(s, (0, 1)), alpha))
            got = run(style, sess, content, [s], alpha=alpha).image
            assert got.shape == content.shape and got.dtype == np.float32
            np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(run(SmallAdaIN(), sessions(SmallAdaIN()), content, [s]).image, got)  # weights were used


def test_import_single_decoder_file(reference_weights, tmp_path, monkeypatch, images):
    folder_style = SmallAdaIN()
    folder_style.load_weights(reference_weights)
    want = run(folder_style, sessions(folder_style), images["content"], [images["style"]]).image

    # decoder.pth with vgg_normalised.pth beside it
    style = SmallAdaIN()
    style.load_weights(reference_weights / "decoder.pth")
    np.testing.assert_array_equal(run(style, sessions(style), images["content"], [images["style"]]).image, want)
    assert style.weights_sha256 != folder_style.weights_sha256 and len(style.weights_sha256) == 64

    # a decoder alone: the encoder comes from the environment, or the error says how to get it
    lone = tmp_path / "decoder_iter_160000.pth.tar"
    lone.write_bytes((reference_weights / "decoder.pth").read_bytes())
    monkeypatch.delenv("STYLEENGINE_ADAIN_VGG", raising=False)
    with pytest.raises(FileNotFoundError, match=r"vgg_normalised\.pth.*engine pull adain"):
        SmallAdaIN().load_weights(lone)
    monkeypatch.setenv("STYLEENGINE_ADAIN_VGG", str(reference_weights / "vgg_normalised.pth"))
    style = SmallAdaIN()
    style.load_weights(tmp_path)  # a folder with decoder_iter_N.pth.tar
    np.testing.assert_array_equal(run(style, sessions(style), images["content"], [images["style"]]).image, want)
    with pytest.raises(ValueError, match="looks like the VGG encoder"):
        SmallAdaIN().load_weights(reference_weights / "vgg_normalised.pth")


def test_engine_checkpoint_round_trip(imported, tmp_path, images):
    from styleengine.weights import save_checkpoint

    style, sess, _ = imported
    save_checkpoint(tmp_path / "ckpt", style.state_dict(), style="adain", model_config={})
    again = SmallAdaIN()
    again.load_weights(tmp_path / "ckpt")
    np.testing.assert_array_equal(
        run(again, sessions(again), images["content"], [images["style"]]).image, run(style, sess, images["content"], [images["style"]]).image
    )


def test_no_weights_is_refused_with_a_hint():
    with pytest.raises(WeightsRequiredError, match=r"engine pull adain.*decoder\.pth.*vgg_normalised\.pth.*--allow-random-weights"):
        AdaINStyle().require_weights(allow_random=False)
    AdaINStyle().require_weights(allow_random=True)


def test_pull_offline_fails_clearly_and_converts_cached_downloads(reference_weights, tmp_path, monkeypatch, images):
    from styleengine.pull import pull_weights
    from styleengine.weights import WeightsUnavailableError

    monkeypatch.setenv("STYLEENGINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLEENGINE_OFFLINE", "1")
    item = AdaINStyle.pretrained["default"]
    assert item.url.endswith("/releases/download/v0.0.0/decoder.pth") and item.companions[0].url.endswith("/vgg_normalised.pth")
    with pytest.raises(WeightsUnavailableError, match=r"offline.*decoder\.pth"):
        pull_weights(AdaINStyle, None, say=lambda m: None)
    # with the release files already in the download cache, pull converts them without any network
    cached = tmp_path / "cache" / "downloads" / "adain" / "default"
    cached.mkdir(parents=True)
    for name in ("decoder.pth", "vgg_normalised.pth"):
        (cached / name).write_bytes((reference_weights / name).read_bytes())
    out = pull_weights(AdaINStyle, None, say=lambda m: None)
    pulled, direct = SmallAdaIN(), SmallAdaIN()
    pulled.load_weights(out)
    direct.load_weights(reference_weights)
    np.testing.assert_array_equal(
        run(pulled, sessions(pulled), images["content"], [images["style"]]).image,
        run(direct, sessions(direct), images["content"], [images["style"]]).image,
    )


# -- pipeline semantics ------------------------------------------------------------------------------------


def test_alpha_zero_is_the_reconstruction(imported, images):
    style, sess, net = imported
    got = run(style, sess, images["content"], [images["style"]], alpha=0.0).image
    with torch.no_grad():
        x = to_tensor(images["content"], (0, 1))
        np.testing.assert_array_equal(got, as_image(net.decoder(net.encoder(x))))


def test_interpolation(imported, images):
    style, sess, net = imported
    c, s1, s2 = images["content"], images["style"], images["style2"]
    single = run(style, sess, c, [s1]).image
    np.testing.assert_array_equal(run(style, sess, c, [s1], style_weights=[1.0]).image, single)
    np.testing.assert_array_equal(run(style, sess, c, [s1], style_weights=[3.0]).image, single)  # normalised to 1
    with torch.no_grad():
        t = lambda a: to_tensor(a, (0, 1))  # noqa: E731
        expected = as_image(net.style_transfer_multi(t(c), [t(s1), t(s2)], [1, 3], alpha=0.8))
        equal = as_image(net.style_transfer_multi(t(c), [t(s1), t(s2)], [1, 1]))
    np.testing.assert_allclose(run(style, sess, c, [s1, s2], style_weights=[1, 3], alpha=0.8).image, expected, atol=1e-6)
    np.testing.assert_allclose(run(style, sess, c, [s1, s2]).image, equal, atol=1e-6)  # no weights: equal
    with pytest.raises(ValueError, match="2 style image"):
        run(style, sess, c, [s1, s2], style_weights=[1.0])


def test_mask_foreground_background(imported, images):
    style, sess, net = imported
    c, fg, bg = images["content"], images["style"], images["style2"]
    mask = np.zeros(c.shape[:2], np.float32)
    mask[:, :30] = 1.0
    rgb_mask = np.repeat(mask[..., None], 3, axis=2)
    got = run(style, sess, c, [fg, bg], mask=rgb_mask, alpha=0.9)
    assert got.info["mask"]
    with torch.no_grad():
        t = lambda a: to_tensor(a, (0, 1))  # noqa: E731
        expected = as_image(net.style_transfer_masked(t(c), t(fg), t(bg), torch.from_numpy(mask), alpha=0.9))
    np.testing.assert_allclose(got.image, expected, atol=1e-6)
    # one style: only the foreground is stylised; an all-white mask is plain AdaIN
    np.testing.assert_allclose(run(style, sess, c, [fg], mask=np.ones_like(rgb_mask)).image, run(style, sess, c, [fg]).image, atol=1e-6)
    outside = run(style, sess, c, [fg], mask=np.zeros_like(rgb_mask)).image
    np.testing.assert_array_equal(outside, run(style, sess, c, [fg], alpha=0.0).image)
    with pytest.raises(ValueError, match="with a mask"):
        run(style, sess, c, [fg, bg, bg], mask=rgb_mask)
    with pytest.raises(ValueError, match="with a mask"):
        run(style, sess, c, [fg, bg], mask=rgb_mask, style_weights=[1, 1])


def test_preserve_color_recolours_the_style_image_first(imported, images):
    style, sess, net = imported
    c, s = images["content"], images["style"]
    got = run(style, sess, c, [s], preserve_color=True)
    assert got.info["style_cache"] == "bypass"
    with torch.no_grad():
        tc, ts = to_tensor(c, (0, 1)), to_tensor(s, (0, 1))
        expected = as_image(net(tc, coral(ts, tc)))
    np.testing.assert_allclose(got.image, expected, atol=1e-6)
    assert not np.allclose(got.image, run(style, sess, c, [s]).image, atol=1e-3)


def test_sizes_are_restored_and_limited(imported, images):
    style, sess, _ = imported
    res = run(style, sess, images["odd"], [images["style"]], content_size=24, style_size=16, crop=True)
    assert res.image.shape == images["odd"].shape
    assert res.info["working_size"] == [24, 40]  # 37x61 -> short side 24, sides multiples of 8
    with pytest.raises(SizeError):
        run(style, sess, np.zeros((2, 9000, 3), np.float32), [images["style"]])
    with pytest.raises(ValueError, match="no style image"):
        style.infer(sess, [StyleRequest(images={"content": images["content"], "style": []})], style.parse_config(EXACT))


def test_batch_of_mixed_sizes_matches_single_requests(imported, images):
    style, sess, _ = imported
    cfg = style.parse_config(EXACT)
    reqs = [request(images["content"], [images["style"]]), request(images["odd"], [images["style2"]]),
            request(images["content"], [images["style2"], images["style"]])]
    batched = style.infer(sess, reqs, cfg)
    for req, got in zip(reqs, batched):
        [alone] = style.infer(sess, [req], cfg)
        assert got.image.shape == alone.image.shape
        np.testing.assert_allclose(got.image, alone.image, atol=1e-5)


# -- caching ----------------------------------------------------------------------------------------------


def test_cache_hit_equals_miss_and_is_reported(reference_weights, images):
    style = SmallAdaIN()
    style.load_weights(reference_weights)
    sess = sessions(style)
    c, s, s2 = images["content"], images["style"], images["style2"]
    miss = run(style, sess, c, [s])
    hit = run(style, sess, c, [s])
    assert (miss.info["style_cache"], miss.info["style_cache_misses"]) == ("miss", 1)
    assert (hit.info["style_cache"], hit.info["style_cache_hits"]) == ("hit", 1)
    np.testing.assert_array_equal(hit.image, miss.image)
    partial = run(style, sess, c, [s, s2])
    assert partial.info["style_cache"] == "partial" and partial.info["style_cache_hits"] == 1
    # other size settings are other entries; a copy of the same pixels is the same entry
    assert run(style, sess, c, [s], style_size=16).info["style_cache"] == "miss"
    assert run(style, sess, c, [s.copy()]).info["style_cache"] == "hit"
    # the encoder costs one pass per request once the style is cached
    calls = []
    enc = sess["encoder"]
    counting = {"encoder": type("S", (), {"runtime": enc.runtime, "device": enc.device, "precision": enc.precision,
                                          "run": lambda self, x: calls.append(1) or enc.run(x)})(), "decoder": sess["decoder"]}
    run(style, counting, c, [s])
    assert len(calls) == 1
    # new weights invalidate the cache
    style.load_weights(reference_weights)
    assert run(style, sess, c, [s]).info["style_cache"] == "miss"


def test_cache_is_bounded_and_thread_safe(reference_weights, images):
    style = SmallAdaIN(cache_size=2)
    style.load_weights(reference_weights)
    sess = sessions(style)
    styles = [smooth_image(16, 16, 100 + i) for i in range(3)]
    for s in styles:
        run(style, sess, images["content"], [s])
    assert len(style.style_cache) == 2
    assert run(style, sess, images["content"], [styles[0]]).info["style_cache"] == "miss"  # evicted (least recent)

    expected = {i: run(SmallAdaIN(cache_size=0), sess, images["content"], [s]).image for i, s in enumerate(styles)}
    errors, results = [], []

    def worker(k: int) -> None:
        try:
            for j in range(6):
                i = (k + j) % 3
                results.append((i, run(style, sess, images["content"], [styles[i]]).image))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 24
    for i, img in results:
        np.testing.assert_array_equal(img, expected[i])
    assert len(style.style_cache) <= 2


# -- the CLI -------------------------------------------------------------------------------------------


def test_cli_infer_with_reference_folder_and_without_weights(reference_weights, tmp_path, images, capsys):
    from styleengine.data import read_image, save_image

    save_image(tmp_path / "content.png", images["content"])
    save_image(tmp_path / "style.png", images["style"])
    base = ["infer", "adain", tmp_path / "content.png", "--image", f"style={tmp_path / 'style.png'}", "-o", tmp_path / "out"]
    code, _, err = engine(capsys, *base)
    assert code == 1 and "engine pull adain" in err and "Traceback" not in err, err
    code, out, err = engine(capsys, *base, "--weights", reference_weights, "--set", "alpha=0.8", "--set", "content_size=0", "--set", "style_size=0")
    assert code == 0, err
    got = read_image(Path(out.strip().splitlines()[-1])).array
    style = AdaINStyle()
    style.load_weights(reference_weights)
    cfg = style.parse_config({"alpha": 0.8, **EXACT})
    [want] = style.infer(sessions(style), [request(read_image(tmp_path / "content.png").array, [read_image(tmp_path / "style.png").array])], cfg)
    np.testing.assert_allclose(got, want.image, atol=1 / 255 + 1e-6)  # PNG quantisation
