"""Load checkpoints written by the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix).

The reference saves ``net.state_dict()`` directly with ``torch.save`` (``<epoch>_net_G.pth``; for
multi-GPU runs it saves ``net.module``'s state dict, so no ``module.`` prefix), and on load it drops
the ``_metadata`` attribute and patches InstanceNorm entries left by PyTorch < 0.4, when
``InstanceNorm2d`` still tracked running statistics.  This module does the same, safely:

* :func:`load_reference_state_dict` uses ``torch.load(weights_only=True)`` (tensors and plain
  containers only, never pickled code), returns a plain ``dict`` (no ``_metadata``), unwraps a
  checkpoint nested under one wrapper key such as ``state_dict`` (the reference never does this, but
  re-saved or third-party checkpoints often do) and strips a ``module.`` prefix (state dicts saved
  from a ``DataParallel`` wrapper).
* :func:`patch_instance_norm_state_dict` drops the stale InstanceNorm statistics.
* :func:`load_into` checks keys and shapes before loading, and raises
  :class:`CheckpointMismatchError` with the offending keys and, where it can tell, which reference
  architecture the checkpoint looks like.

Dropping ``_metadata`` also means BatchNorm layers see "no version" and fill in a missing
``num_batches_tracked`` themselves, which is what lets pre-0.4 BatchNorm checkpoints load.

The reference projects (pytorch-CycleGAN-and-pix2pix, BicycleGAN) also write their command-line options
beside the checkpoints (``checkpoints/NAME/train_opt.txt``; BicycleGAN: ``opt.txt``), in the block
``BaseOptions.print_options`` prints::

    ----------------- Options ---------------
                   batch_size: 2
                    crop_size: 256                           \t[default: 256]
    ----------------- End -------------------

one ``{key:>25}: {value:<30}`` line per option, ``\t[default: D]`` appended where the value differs from
the default.  :func:`read_reference_options` parses it (:class:`ReferenceOptions`) and
:func:`find_options_file` finds it beside a checkpoint, so importers can read what the weights alone do
not tell (dropout, the non-linearity, the size the model was trained at).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from ..weights import safe_torch_load

__all__ = [
    "OPTIONS_FILES",
    "ReferenceOptions",
    "find_options_file",
    "parse_reference_options",
    "read_reference_options",
    "CheckpointMismatchError",
    "describe_architecture",
    "load_into",
    "load_reference_state_dict",
    "patch_instance_norm_state_dict",
]

#: Wrapper keys under which re-saved checkpoints commonly nest the actual state dict.
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net", "netG", "params")
_DP_PREFIX = "module."
_MAX_LISTED = 10


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not fit the target module.

    Attributes: ``missing`` / ``unexpected`` (key lists), ``shape_mismatches`` (``(key,
    checkpoint_shape, module_shape)`` triples) and ``hint`` (architecture guess or ``None``).
    """

    def __init__(
        self,
        message: str,
        *,
        missing: list[str],
        unexpected: list[str],
        shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
        hint: str | None,
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.shape_mismatches = shape_mismatches
        self.hint = hint


def _is_tensor_mapping(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(isinstance(v, torch.Tensor) for v in obj.values())


def load_reference_state_dict(path: str | os.PathLike[str] | IO[bytes]) -> dict[str, torch.Tensor]:
    """Read a reference ``.pth`` checkpoint into a plain ``{key: tensor}`` dict on the CPU.

    Raises ``ValueError`` if the file holds something other than a state dict (possibly nested under
    one of :data:`WRAPPER_KEYS`); ``torch.load`` itself refuses pickled objects other than tensors and
    plain containers.
    """
    obj = torch.load(path, map_location="cpu", weights_only=True) if not isinstance(path, str | os.PathLike) else safe_torch_load(path)
    if not _is_tensor_mapping(obj):
        inner = None
        if isinstance(obj, Mapping):
            inner = next(
                (obj[k] for k in WRAPPER_KEYS if k in obj and _is_tensor_mapping(obj[k])), None
            )
        if inner is None:
            if isinstance(obj, Mapping):
                keys = ", ".join(repr(k) for k in list(obj)[:_MAX_LISTED])
                what = f"a mapping with keys {keys}"
            else:
                what = type(obj).__name__
            raise ValueError(
                f"{path!s} is not a state dict: found {what}; expected {{name: tensor}}, possibly "
                f"nested under one of {', '.join(WRAPPER_KEYS)}"
            )
        obj = inner
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():  # a plain dict: drops OrderedDict._metadata
        key = str(key)
        if key.startswith(_DP_PREFIX):
            key = key[len(_DP_PREFIX) :]
        state[key] = value
    return state


def _owner(module: nn.Module, key: str) -> tuple[nn.Module | None, str]:
    """The submodule that a state-dict key belongs to (None if the path does not resolve) and the
    key's last component."""
    path, _, leaf = key.rpartition(".")
    try:
        return (module.get_submodule(path) if path else module), leaf
    except AttributeError:
        return None, leaf


def patch_instance_norm_state_dict(
    state: Mapping[str, torch.Tensor], module: nn.Module
) -> dict[str, torch.Tensor]:
    """Drop the statistics that PyTorch < 0.4 stored for InstanceNorm layers, as the reference does.

    For keys that belong to an ``InstanceNorm*`` layer of ``module``: ``running_mean`` /
    ``running_var`` are dropped when that layer tracks no running statistics (the reference's
    instance norm never does), and ``num_batches_tracked`` is always dropped.  Keys that do not
    resolve to a submodule are kept (:func:`load_into` reports them).  Returns a new dict.
    """
    patched: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        owner, leaf = _owner(module, key)
        if owner is not None and type(owner).__name__.startswith("InstanceNorm"):
            if leaf in ("running_mean", "running_var") and getattr(owner, leaf, None) is None:
                continue
            if leaf == "num_batches_tracked":
                continue
        patched[key] = value
    return patched


# --------------------------------------------------------------------------- architecture guess

_UNET_KEY = re.compile(
    r"^model\.(?:model\.\d+\.)+(?:weight|bias|running_mean|running_var|num_batches_tracked)$"
)


def _norm_kind(state: Mapping[str, torch.Tensor], post_norm_conv: str) -> str:
    """Guess the norm: BN has 1-D affine weights; instance norm (post-0.4) has none but keeps conv
    biases; pre-0.4 instance norm left running stats; "none" has neither."""
    if any(k.endswith(".weight") and v.dim() == 1 for k, v in state.items()):
        return "batch"
    if f"{post_norm_conv}.bias" in state or any(k.endswith("running_mean") for k in state):
        return "instance"
    return "none"


def _describe_unet(state: Mapping[str, torch.Tensor]) -> str | None:
    if "model.model.0.weight" not in state or not all(_UNET_KEY.match(k) for k in state):
        return None
    # Keys read "model." (the generator's attribute) then "model.<i>." once per block level, so a
    # key of the block at level d (outermost: 0) holds d + 2 "model" tokens; the innermost block
    # sits at level num_downs - 1.
    num_downs = max(k.split(".").count("model") for k in state) - 1
    first = state["model.model.0.weight"]
    up = state.get("model.model.3.weight")
    out_nc = int(up.shape[1]) if up is not None and up.dim() == 4 else "?"
    name = {8: "unet_256", 7: "unet_128"}.get(num_downs, f"UnetGenerator(num_downs={num_downs})")
    norm = _norm_kind(state, "model.model.1.model.1")
    return (
        f"{name} (input_nc={first.shape[1]}, output_nc={out_nc}, ngf={first.shape[0]}, norm={norm})"
    )


def _describe_resnet(state: Mapping[str, torch.Tensor]) -> str | None:
    blocks = {k.split(".")[1] for k in state if k.startswith("model.") and ".conv_block." in k}
    first = state.get("model.1.weight")
    if not blocks or first is None or first.dim() != 4:
        return None
    convs = sorted(
        (int(k.split(".")[1]), v)
        for k, v in state.items()
        if re.fullmatch(r"model\.\d+\.weight", k) and v.dim() == 4
    )
    out_nc = convs[-1][1].shape[0]
    n = len(blocks)
    name = f"resnet_{n}blocks" if n in (6, 9) else f"ResnetGenerator(n_blocks={n})"
    norm = _norm_kind(state, "model.1")
    return (
        f"{name} (input_nc={first.shape[1]}, output_nc={out_nc}, ngf={first.shape[0]}, norm={norm})"
    )


def _describe_discriminator(state: Mapping[str, torch.Tensor]) -> str | None:
    if "net.0.weight" in state:
        w = state["net.0.weight"]
        norm = _norm_kind(state, "net.2")
        return f"pixel discriminator (input_nc={w.shape[1]}, ndf={w.shape[0]}, norm={norm})"
    w = state.get("model.0.weight")
    if w is None or w.dim() != 4 or w.shape[-1] != 4:
        return None
    convs = [k for k, v in state.items() if re.fullmatch(r"model\.\d+\.weight", k) and v.dim() == 4]
    n_layers = len(convs) - 2
    if n_layers == 3:
        name = "basic PatchGAN (n_layers=3)"
    else:
        name = f"n_layers PatchGAN (n_layers_D={n_layers})"
    norm = _norm_kind(state, "model.2")
    return f"{name} (input_nc={w.shape[1]}, ndf={w.shape[0]}, norm={norm})"


def describe_architecture(state: Mapping[str, torch.Tensor]) -> str | None:
    """Name the reference network a state dict looks like, e.g. ``"unet_128 (input_nc=3, ...)"``,
    from its key layout and shapes; ``None`` if it is not recognisable.  (Dropout has no weights, so
    it cannot be told from a checkpoint.)"""
    if not state:
        return None
    for guess in (_describe_unet, _describe_resnet, _describe_discriminator):
        found = guess(state)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- loading


def _listing(label: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f" (and {len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"\n  {label} ({len(keys)}): {shown}{more}"


def load_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    strict: bool = True,
    *,
    patch_instance_norm: bool = True,
) -> nn.Module:
    """Load ``state`` into ``module`` after checking it fits; return ``module``.

    With ``patch_instance_norm`` (default) :func:`patch_instance_norm_state_dict` is applied first, as
    the reference's loader does.  Missing keys (except a BatchNorm's ``num_batches_tracked``, which
    torch fills in) and unexpected keys raise :class:`CheckpointMismatchError` when ``strict``; shape
    mismatches always do.  Nothing is loaded when it raises.
    """
    state = patch_instance_norm_state_dict(state, module) if patch_instance_norm else dict(state)
    expected = module.state_dict()
    missing = [
        k for k in expected if k not in state and not k.endswith(".num_batches_tracked")
    ]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        (k, tuple(state[k].shape), tuple(expected[k].shape))
        for k in state
        if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if shapes or (strict and (missing or unexpected)):
        seen, wanted = describe_architecture(state), describe_architecture(expected)
        hint = None
        if seen is not None and seen != wanted:
            module_is = wanted or type(module).__name__
            hint = f"the checkpoint looks like {seen}, but the module is {module_is}"
        message = (
            f"checkpoint does not fit {type(module).__name__}: {len(missing)} missing key(s), "
            f"{len(unexpected)} unexpected key(s), {len(shapes)} shape mismatch(es)"
        )
        if missing:
            message += _listing("missing", missing)
        if unexpected:
            message += _listing("unexpected", unexpected)
        if shapes:
            message += _listing(
                "shape mismatch",
                [f"{k} checkpoint {list(a)} vs module {list(b)}" for k, a, b in shapes],
            )
        if hint:
            message += f"\n  hint: {hint}"
        raise CheckpointMismatchError(
            message, missing=missing, unexpected=unexpected, shape_mismatches=shapes, hint=hint
        )
    module.load_state_dict(state, strict=strict)
    return module


# --------------------------------------------------------------------------- options files

#: Options files the reference projects write beside their checkpoints, most telling first:
#: pix2pix/CycleGAN write ``<phase>_opt.txt``; BicycleGAN writes ``opt.txt`` (its test.py overwrites
#: it with the test options, which still carry the architecture).
OPTIONS_FILES: tuple[str, ...] = ("train_opt.txt", "opt.txt", "test_opt.txt")

_OPTIONS_HEAD = re.compile(r"^-+ Options -+$")
_OPTIONS_END = re.compile(r"^-+ End -+$")
_DEFAULT_NOTE = re.compile(r"\t\[default: (?P<default>.*)\]$")
_INT = re.compile(r"^[+-]?\d+$")


def _option_value(raw: str) -> Any:
    """``str(value)`` of an argparse option back to a value: bools, None, ints, floats (``inf``), else the string."""
    if raw in ("True", "False"):
        return raw == "True"
    if raw == "None":
        return None
    if _INT.match(raw):
        return int(raw)
    try:
        return float(raw)
    except ValueError:
        return raw


@dataclass(frozen=True)
class ReferenceOptions:
    """A parsed options block: ``values`` (typed), ``raw`` (the strings as written), ``defaults`` (the
    reference's defaults of the options that were changed, as written), and the file it came from."""

    values: dict[str, Any]
    raw: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def pick(self, keys: Sequence[str]) -> dict[str, Any]:
        """The options among ``keys`` that the file has."""
        return {k: self.values[k] for k in keys if k in self.values}


def parse_reference_options(text: str, source: str = "options") -> ReferenceOptions:
    """Parse the ``----- Options -----`` block of a reference options file (see the module docstring).

    Raises ``ValueError`` naming ``source`` when there is no such block or a line in it is not ``key: value``.
    """
    values: dict[str, Any] = {}
    raw: dict[str, str] = {}
    defaults: dict[str, str] = {}
    inside = found = False
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if _OPTIONS_HEAD.match(stripped):
            inside = found = True
            continue
        if _OPTIONS_END.match(stripped):
            inside = False
            continue
        if not inside or not stripped:
            continue
        key, sep, rest = line.lstrip(" ").partition(":")  # option names hold no colon; values may
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"{source}: line {n} is not 'option: value': {line.strip()[:80]!r}")
        rest = rest[1:] if rest.startswith(" ") else rest
        note = _DEFAULT_NOTE.search(rest)
        if note:
            defaults[key] = note["default"]
            rest = rest[: note.start()]
        raw[key] = rest.rstrip()
        values[key] = _option_value(raw[key])
    if not found:
        raise ValueError(f"{source}: not a reference options file (no '----- Options -----' block)")
    return ReferenceOptions(values, raw, defaults)


def read_reference_options(path: str | os.PathLike[str]) -> ReferenceOptions:
    """Read and parse a reference options file (``train_opt.txt``, ``opt.txt``)."""
    p = Path(path)
    opts = parse_reference_options(p.read_text(encoding="utf-8", errors="replace"), source=str(p))
    return ReferenceOptions(opts.values, opts.raw, opts.defaults, p)


def find_options_file(near: str | os.PathLike[str], names: Sequence[str] = OPTIONS_FILES) -> Path | None:
    """The options file beside a checkpoint file (or in a checkpoint folder), first of ``names``; None if none."""
    p = Path(near)
    folder = p if p.is_dir() else p.parent
    return next((folder / n for n in names if (folder / n).is_file()), None)
