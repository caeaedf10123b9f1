"""Plugin discovery and the registry: duplicates, aliases, allow-list, broken plugins, API version."""

from __future__ import annotations

import pytest
from support import make_dist, style_module

from styleengine.plugins import PluginLoadError, load_engine
from styleengine.registry import Registry, RegistryError, UnknownNameError


def test_builtin_runtimes_and_test_style_are_registered():
    engine = load_engine()
    assert {"torch", "onnxruntime", "tensorrt"} <= set(engine.runtimes.names())
    assert "test-style" in engine.styles.names()
    entry = engine.styles.get("teststyle")  # alias
    assert entry.name == "test-style" and entry.distribution == "styleengine-test-style"


def test_alias_and_separator_lookup_and_did_you_mean():
    reg: Registry[object] = Registry("style")
    reg.add("pix2pix", object(), distribution="d", aliases=("p2p",))
    reg.add("instruct_pix2pix", object(), distribution="d")
    assert reg.resolve("P2P") == "pix2pix"
    assert reg.resolve("instruct-pix2pix") == "instruct_pix2pix"
    with pytest.raises(UnknownNameError) as exc:
        reg.resolve("pix2pi")
    assert "Did you mean 'pix2pix'" in str(exc.value) and "Known styles" in str(exc.value)


def test_invalid_names_rejected():
    reg: Registry[object] = Registry("style")
    with pytest.raises(RegistryError, match="invalid"):
        reg.add("Bad Name", object(), distribution="dist-x")


def test_duplicate_style_names_both_distributions(plugin_root):
    make_dist(plugin_root, "dist-one", {"one": "mod_one"}, {"mod_one": style_module("dupe")})
    make_dist(plugin_root, "dist-two", {"two": "mod_two"}, {"mod_two": style_module("dupe")})
    engine = load_engine(allow=["one", "two"])
    assert engine.styles.get("dupe").distribution == "dist-one"
    [skip] = engine.skipped
    assert skip.distribution == "dist-two" and "dist-one" in skip.error and "dist-two" in skip.error
    with pytest.raises(PluginLoadError, match="registered twice.*dist-one.*dist-two"):
        load_engine(allow=["one", "two"], strict=True)


def test_duplicate_alias_clashes_with_name(plugin_root):
    make_dist(plugin_root, "dist-a", {"a": "mod_a"}, {"mod_a": style_module("alpha")})
    make_dist(plugin_root, "dist-b", {"b": "mod_b"}, {"mod_b": style_module("beta", aliases=("alpha",))})
    engine = load_engine(allow=["a", "b"])
    assert "beta" not in engine.styles  # the whole plugin is out, not half of it
    assert "dist-a" in engine.skipped[0].error


def test_broken_plugin_is_skipped_with_distribution_and_error(plugin_root):
    make_dist(plugin_root, "broken-dist", {"broken": "mod_broken"}, {"mod_broken": "raise RuntimeError('boom at import')\n"})
    engine = load_engine()
    [skip] = [s for s in engine.skipped if s.name == "broken"]
    assert skip.distribution == "broken-dist" and skip.stage == "import" and "boom at import" in skip.error
    assert "test-style" in engine.styles  # the others still load
    with pytest.raises(PluginLoadError, match="broken-dist.*boom at import"):
        load_engine(strict=True)


def test_plugin_failing_in_register_is_skipped(plugin_root):
    src = "import styleengine\n@styleengine.hookimpl\ndef register_styles(register):\n    raise ValueError('bad registration')\n"
    make_dist(plugin_root, "reg-dist", {"reg": "mod_reg"}, {"mod_reg": src})
    engine = load_engine(allow=["reg"])
    [skip] = engine.skipped
    assert skip.stage == "register_styles" and "bad registration" in skip.error


def test_api_version_checked(plugin_root):
    make_dist(plugin_root, "old-dist", {"old": "mod_old"}, {"mod_old": style_module("oldstyle", api=0)})
    engine = load_engine(allow=["old"])
    assert "oldstyle" not in engine.styles
    assert "API version 0" in engine.skipped[0].error


def test_non_style_registration_refused(plugin_root):
    src = "import styleengine\n@styleengine.hookimpl\ndef register_styles(register):\n    register(int)\n"
    make_dist(plugin_root, "int-dist", {"intp": "mod_int"}, {"mod_int": src})
    engine = load_engine(allow=["intp"])
    assert "not a styleengine.Style subclass" in engine.skipped[0].error


def test_allow_list_env(plugin_root, monkeypatch):
    make_dist(plugin_root, "dist-a", {"a": "mod_a2"}, {"mod_a2": style_module("alpha")})
    monkeypatch.setenv("STYLEENGINE_PLUGINS", "a")
    engine = load_engine()
    assert engine.styles.names() == ["alpha"]
    monkeypatch.setenv("STYLEENGINE_PLUGINS", "")
    assert load_engine().styles.names() == []
    assert load_engine().runtimes.names() == ["onnxruntime", "tensorrt", "torch"]  # the engine's own always load


def test_extra_plugin_module_by_import_path(plugin_root):
    (plugin_root / "extra_mod.py").write_text(style_module("extra"))
    engine = load_engine(allow=[], extra_plugins=["extra_mod"])
    assert "extra" not in engine.styles  # allow-list applies to extra modules too
    engine = load_engine(extra_plugins=["extra_mod"])
    assert engine.styles.get("extra").distribution == "extra_mod"


def test_verb_hooks_can_be_wrapped(plugin_root):
    src = '''
import styleengine
calls = []

@styleengine.hookimpl(wrapper=True)
def style_infer(style, sessions, batch, cfg):
    calls.append("before")
    results = yield
    calls.append(len(results))
    return results
'''
    (plugin_root / "wrap_mod.py").write_text(src)
    engine = load_engine(extra_plugins=["wrap_mod"])
    import numpy as np

    import wrap_mod
    from styleengine.sessions import open_sessions
    from styleengine.style import StyleRequest

    style = engine.style_class("test-style")()
    sessions = open_sessions(engine, style, "torch")
    req = StyleRequest(images={"image": np.zeros((16, 16, 3), np.float32)})
    out = engine.hook.style_infer(style=style, sessions=sessions, batch=[req, req], cfg=style.Config())
    assert len(out) == 2 and wrap_mod.calls == ["before", 2]
