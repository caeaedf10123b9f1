"""The conformance suite catches broken plugins, each failure naming the fix (pytester runs the suite on
deliberately broken styles), and its pytest plugin runs it from an ini option."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

# Each run is a subprocess: an in-process run drops the modules it imported when it ends (torch.export imports
# some lazily), and torch / numpy extensions cannot be imported twice in one process.


# A tiny, correct style; each broken one below changes one thing.
STYLES = '''
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import ConfigDict, Field
from torch import nn

from styleengine.preprocess import fit, from_tensor, restore
from styleengine.spec import Dim, GraphSpec, Tolerance, image_tensor
from styleengine.style import Capability, InputContract, Style, StyleConfig, StyleRequest, StyleResult


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(image))


class Config(StyleConfig):
    strength: float = Field(1.0, ge=0.0, le=1.0, description="blend")


class Good(Style):
    name = "good"
    description = "a correct tiny style"
    Config = Config
    inputs = InputContract(size_multiple=8, size_policy="pad", max_side=256)
    batch = Dim("batch", 1, 2, 4)
    height = Dim("height", 8, 16, 32, multiple_of=8)
    width = Dim("width", 8, 16, 32, multiple_of=8)

    def build(self):
        return {"net": Net()}

    def graphs(self):
        img = dict(batch=self.batch, height=self.height, width=self.width)
        return [GraphSpec("net", inputs=(image_tensor("image", **img),), outputs=(image_tensor("output", **img),),
                          tolerance=Tolerance(atol=1e-4, rtol=1e-3), module=self.modules["net"])]

    def pipeline(self, sessions, batch, cfg):
        h, w = self.height.replace(max=256), self.width.replace(max=256)
        fitted = [fit(r.image(), self.inputs, h, w) for r in batch]
        return fitted, [sessions["net"].run({"image": f.tensor})["output"] for f in fitted]

    def infer(self, sessions, batch, cfg):
        fitted, outs = self.pipeline(sessions, batch, cfg)
        return [StyleResult(from_tensor(restore(o, f))) for o, f in zip(outs, fitted)]


class BatchMixer(Good):
    """Normalises over the whole batch: a request's output depends on the others."""

    def infer(self, sessions, batch, cfg):
        fitted, outs = self.pipeline(sessions, batch, cfg)
        mean = torch.stack([o.mean() for o in outs]).mean()
        return [StyleResult(from_tensor(restore(o - mean, f))) for o, f in zip(outs, fitted)]


class ShapeBranch(nn.Module):
    """Python control flow on a shape: traced once at the opt width (16), so ONNX always takes that branch."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] == 16:
            return image
        return image * 0.5


class Drifter(Good):
    def build(self):
        return {"net": ShapeBranch()}

    def graphs(self):
        [spec] = super().graphs()
        return [spec.replace(exporter="torchscript")]


class Boaster(Good):
    """Declares TRAIN without implementing train()."""

    capabilities = frozenset({Capability.INFER, Capability.EXPORT, Capability.TRAIN})
    TrainConfig = Config


class NanConfig(StyleConfig):
    model_config = ConfigDict(allow_inf_nan=True)
    gain: float = Field(1.0, description="gain")


class NanAccepter(Good):
    Config = NanConfig


class Forgetful(Good):
    """Returns the padded output: forgets restore()."""

    def infer(self, sessions, batch, cfg):
        fitted, outs = self.pipeline(sessions, batch, cfg)
        return [StyleResult(from_tensor(o)) for o in outs]
'''


def run_suite(pytester: pytest.Pytester, cls: str, check: str) -> pytest.RunResult:
    pytester.makepyfile(mystyles=STYLES)
    pytester.makepyfile(test_it=f"""
        from styleengine.testing import StyleConformance
        import mystyles

        class TestIt(StyleConformance):
            style_class = mystyles.{cls}
            image_size = (16, 24)
    """)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-k", check)


def test_good_style_passes_every_check_but_the_entry_point(pytester: pytest.Pytester) -> None:
    r = run_suite(pytester, "Good", "not tensorrt")
    # not installed through an entry point: that check says how to declare it
    r.assert_outcomes(passed=10, failed=1)
    r.stdout.fnmatch_lines(["*registered_through_entry_point*no style 'good' is registered*", "*[[]project.entry-points.styleengine]*"])


def test_catches_batch_that_differs_from_singles(pytester: pytest.Pytester) -> None:
    r = run_suite(pytester, "BatchMixer", "batch_equals")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*request 0 of a batch of 3 differs from the same request alone*", "*fix: infer must not mix requests*"])


def test_catches_export_drifting_beyond_tolerance(pytester: pytest.Pytester) -> None:
    r = run_suite(pytester, "Drifter", "export_parity")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*graph net: ONNX Runtime drifts from torch beyond the tolerance*output at min*",
                            "*fix: the export computes something else than torch eager*"])


def test_catches_declared_capability_it_lacks(pytester: pytest.Pytester) -> None:
    r = run_suite(pytester, "Boaster", "capabilities")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*declares Capability.TRAIN but does not implement train(cfg, ctx)*",
                            "*fix: implement the method or remove the capability*"])


def test_catches_config_accepting_nan(pytester: pytest.Pytester) -> None:
    r = run_suite(pytester, "NanAccepter", "config_validates")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*Config.gain accepts nan*", "*fix: derive Config from styleengine.StyleConfig (allow_inf_nan=False)*"])


def test_catches_infer_that_forgets_restore(pytester: pytest.Pytester) -> None:
    """The 16x24 test size is a multiple of 8: only the odd sizes and dims' edges the suite adds show it."""
    r = run_suite(pytester, "Forgetful", "input_contract")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*35x19 request: the result is 40x24, the request was 35x19*", "*fix: call styleengine.preprocess.restore(output, fitted)*"])


def test_pytest_plugin_runs_the_suite_from_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["styleengine.testing"]\n')
    pytester.makeini(textwrap.dedent("""
        [pytest]
        styleengine_conformance =
            test-style {"model_config": {"channels": 2}, "image_size": [16, 24]}
    """))
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-m", "conformance", "-k", "declaration or config or entry_point")
    r.assert_outcomes(passed=3)
    r.stdout.fnmatch_lines(["styleengine *plugin API 1*styles:*test-style*", "*TestTestStyleConformance::test_registered_through_entry_point PASSED*"])


def test_pytest_plugin_refuses_unknown_settings(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["styleengine.testing"]\n')
    pytester.makeini('[pytest]\nstyleengine_conformance =\n    test-style {"modle_config": {}}\n')
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert r.ret != 0
    r.stdout.fnmatch_lines(["*unknown settings ?'modle_config'?*"])
