"""Every hook a styleengine plugin may implement.

Plugins implement hooks with ``@styleengine.hookimpl`` in the module named by their entry point
(group ``styleengine``).  Three kinds:

*Registration* hooks run once at start-up and hand the plugin a ``register`` callback.  Nothing is
dispatched by name through ``firstresult`` chains: the registry looks styles and runtimes up by name.

*Verb* hooks (``style_train``, ``style_export``, ``style_infer``) are how the engine runs a style.  The
engine's own implementation is ``trylast`` and calls the registered :class:`~styleengine.style.Style`;
other plugins wrap it with ``@hookimpl(wrapper=True)`` for cross-cutting work (timing, watermarking,
safety filters, audit logs)::

    @hookimpl(wrapper=True)
    def style_infer(style, sessions, batch, cfg):
        t0 = time.perf_counter()
        results = yield            # the engine (or an inner wrapper) runs the style
        audit(style.name, len(batch), time.perf_counter() - t0)
        return results

*Overridable steps* (``export_onnx``, ``build_engine``) are ``firstresult``: the engine's default is
``trylast``, so a plugin returning a non-``None`` result takes over that step for the graphs it cares
about (a custom exporter for one graph, an engine cache) and returns ``None`` for the rest.

Hook changes are additive only; a plugin written against an older hook set keeps working.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from .export.options import ExportOptions, ExportResult
    from .runtime.base import Runtime, Session
    from .spec import GraphSpec
    from .style import Style, StyleConfig, StyleRequest, StyleResult
    from .training import TrainContext, TrainResult

PROJECT = "styleengine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration -------------------------------------------------------------------------------
@hookspec
def register_styles(register: Callable[[type[Style]], None]) -> None:
    """Register :class:`~styleengine.style.Style` subclasses: call ``register(MyStyle)`` for each.

    Names and aliases must be unique across all plugins; a clash is reported naming both
    distributions.  ``Style.api_version`` must match the engine's major API version.
    """


@hookspec
def register_runtimes(register: Callable[[type[Runtime]], None]) -> None:
    """Register :class:`~styleengine.runtime.base.Runtime` subclasses (``torch``, ``onnxruntime`` ...)."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``engine`` CLI (e.g. ``cli.add_command(my_group)``)."""


# -- verbs ----------------------------------------------------------------------------------------
@hookspec(firstresult=True)
def style_train(style: Style, cfg: StyleConfig, ctx: TrainContext) -> TrainResult | None:
    """Train ``style`` with training config ``cfg``; ``ctx`` carries the data, output folder, resume
    state and progress reporting.  Wrap it to add cross-cutting behaviour."""


@hookspec(firstresult=True)
def style_export(style: Style, options: ExportOptions) -> ExportResult | None:
    """Export every graph of ``style`` (ONNX, validation, engines, manifest) as ``options`` says."""


@hookspec(firstresult=True)
def style_infer(
    style: Style, sessions: Mapping[str, Session], batch: Sequence[StyleRequest], cfg: StyleConfig
) -> list[StyleResult] | None:
    """Run ``style``'s pipeline on a batch of requests sharing ``cfg``; one result per request, in order."""


# -- overridable export steps ------------------------------------------------------------------------
@hookspec(firstresult=True)
def export_onnx(spec: GraphSpec, path: Path, options: ExportOptions) -> Mapping[str, Any] | None:
    """Write ``spec`` as ONNX to ``path`` (external data beside it where needed).

    Return a dict describing the export (at least ``{"exporter": name}``) or ``None`` to leave this
    graph to the next implementation (finally the engine's ``torch.onnx.export``)."""


@hookspec(firstresult=True)
def build_engine(spec: GraphSpec, onnx_path: Path, engine_path: Path, options: ExportOptions) -> Mapping[str, Any] | None:
    """Build a TensorRT engine for ``spec`` from ``onnx_path`` into ``engine_path``.

    Return a dict describing the build (cache key, precision, TensorRT version, GPU) or ``None`` to
    pass.  The engine default raises :class:`~styleengine.runtime.base.RuntimeUnavailableError` where
    ``tensorrt`` does not import."""
