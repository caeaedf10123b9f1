"""Install invariants: torchvision absent, torch pinned, onnxruntime builds never mixed, entry points."""

from __future__ import annotations

import importlib.util
from importlib import metadata


def test_torchvision_is_absent():
    assert importlib.util.find_spec("torchvision") is None
    for dist in metadata.distributions():
        # Requirements that only apply to an optional extra (peft's "test" extra names torchvision) are not installed.
        reqs = [r for r in dist.requires or [] if "extra ==" not in r.partition(";")[2]]
        assert not any(r.split(";")[0].strip().lower().startswith("torchvision") for r in reqs), dist.metadata["Name"]


def test_torch_is_the_pinned_version():
    assert metadata.version("torch").startswith("2.13.0")
    assert "torch==2.13.0" in (metadata.distribution("styleengine").requires or [])


def test_onnxruntime_builds_are_not_mixed():
    installed = set()
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(name)
            installed.add(name)
        except metadata.PackageNotFoundError:
            pass
    assert len(installed) == 1, f"exactly one onnxruntime build must be installed, found {sorted(installed)}"


def test_console_scripts_and_module_entry():
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts") if ep.value.startswith("styleengine")}
    assert scripts == {"engine": "styleengine.cli:main", "styleengine": "styleengine.cli:main"}
    assert importlib.util.find_spec("styleengine.__main__") is not None
