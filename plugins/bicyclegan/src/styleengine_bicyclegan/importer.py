"""The reference implementation's formats: ``latest_net_G.pth`` + ``latest_net_E.pth`` and published releases.

Checkpoints: the reference saves each network's ``state_dict()`` with ``torch.save``
(``<epoch>_net_G.pth``, ``<epoch>_net_E.pth``, ``<epoch>_net_D.pth``, ``<epoch>_net_D2.pth``; its
``download_model.sh`` stores the releases as ``latest_net_G.pth`` / ``latest_net_E.pth``).  Files are read with
``torch.load(weights_only=True)`` only (:func:`styleengine.nn.load_reference_state_dict`), then loaded with
:func:`styleengine.nn.load_into`, which checks keys and shapes first and drops the stale InstanceNorm running
statistics that PyTorch < 0.4 saved, as the reference's ``__patch_instance_norm_state_dict`` does.

``--weights`` takes a folder (``latest_net_G.pth`` + ``latest_net_E.pth``, or one ``*_net_G.pth`` with its
``*_net_E.pth``) or the generator file (the encoder is looked up beside it under the same prefix).  Without an
encoder file the generator still loads (random z and explicit z work), with a warning; a ``style`` image then
gets a random encoder's code.

The architecture is read off the keys: ``where_add`` (``model.down.0`` = G_Unet_add_all, ``model.model.0`` =
G_Unet_add_input), ``netG`` (depth), ``ngf``, ``nz`` (add_all: the extra channels of every down-conv; add_input:
the encoder's ``fc`` width, else the configured nz), ``input_nc``, ``output_nc``, ``upsample`` (a 4x4 transposed
conv or a 3x3 conv after the up-sampling), batch norm (1-D affine weights); the encoder's ``netE``, ``nef`` and
its nz.  What leaves no trace in the weights keeps its configured value, or comes from the ``opt.txt`` the
reference writes beside its checkpoints when there is one: ``nl``, ``use_dropout`` (inference runs in eval mode
anyway) and instance norm versus no norm (neither has parameters; the default is the reference's ``instance``).
Model-config fields set explicitly that contradict the checkpoint are an error naming both.

Published models (:data:`PRETRAINED`, ``engine pull bicyclegan:<name>``): what the reference's
``pretrained_models/download_model.sh`` fetches (``http://efrosgans.eecs.berkeley.edu/BicycleGAN//models/
<name>_net_G.pth`` and ``_net_E.pth``): edges2shoes, edges2handbags, night2day, maps, facades, with the
input_nc / direction / sizes of the reference's ``scripts/test_<name>.sh``.  **sha256 is None for every file**:
the reference publishes no checksums and this machine cannot download them to compute them (and the server
speaks plain http); ``engine pull`` prints the sha256 of what it downloaded.

torch is imported inside the functions, so the style class can declare :data:`PRETRAINED` without it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from styleengine.pull import Pretrained

if TYPE_CHECKING:
    import torch

    from .style import BicycleGAN

log = logging.getLogger(__name__)

URL = "http://efrosgans.eecs.berkeley.edu/BicycleGAN//models/{name}_net_{net}.pth"

#: name -> (input_nc, direction, test load/crop size, description), from the reference's scripts/test_<name>.sh.
_MODELS: dict[str, tuple[int, str, int, str]] = {
    "edges2shoes": (1, "AtoB", 256, "UT Zappos50K: edge map -> shoe photos"),
    "edges2handbags": (1, "AtoB", 256, "iGAN handbags: edge map -> handbag photos"),
    "night2day": (3, "AtoB", 256, "Transient Attributes: night-time -> daytime scenes"),
    "maps": (3, "BtoA", 512, "Google Maps: map -> aerial photos (tested at 512 x 512, without the encoder)"),
    "facades": (3, "BtoA", 256, "CMP Facades: label map -> facade photos"),
}

PRETRAINED: dict[str, Pretrained] = {
    name: Pretrained(
        url=URL.format(name=name, net="G"),
        sha256=None,  # not published by the reference; see the module docstring
        description=f"{desc} (reference test size {size} x {size})",
        model_config={"netG": "unet_256", "where_add": "all", "nz": 8, "ngf": 64, "nef": 64, "netE": "resnet_256", "norm": "instance",
                      "nl": "relu", "upsample": "basic", "input_nc": input_nc, "output_nc": 3, "direction": direction},
        filename="latest_net_G.pth",
        companions=(Pretrained(url=URL.format(name=name, net="E"), sha256=None, filename="latest_net_E.pth"),),
    )
    for name, (input_nc, direction, size, desc) in _MODELS.items()
}

#: Reference option names that are also ModelConfig fields (read from opt.txt where the weights are silent).
OPTION_FIELDS = ("nl", "use_dropout", "norm", "nz", "direction")

_G_DEPTH = {8: "unet_256", 7: "unet_128"}


def _has_batch_norm(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.endswith("running_var") for k in state) and any(k.endswith(".weight") and v.dim() == 1 for k, v in state.items())


def _conv_index(state: Mapping[str, torch.Tensor], prefix: str) -> tuple[int, torch.Tensor] | None:
    """The first 4-D weight directly under ``prefix`` (``model.up.``): its index and tensor."""
    found = sorted((int(m.group(1)), v) for k, v in state.items() if (m := re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", k)) and v.dim() == 4)
    return found[0] if found else None


def detect_generator(state: Mapping[str, torch.Tensor], nz_hint: int | None) -> dict[str, Any] | None:
    """The ModelConfig fields a generator state dict implies, or None if it is not a BicycleGAN generator."""
    first = state.get("model.down.0.weight")
    if first is not None and first.dim() == 4:  # G_Unet_add_all
        depth = max(k.split(".").count("submodule") for k in state) + 1
        second = state.get("model.submodule.down.1.weight")
        up = _conv_index(state, "model.up.")
        if depth not in _G_DEPTH or second is None or up is None:
            return None
        ngf = int(first.shape[0])
        nz = int(second.shape[1]) - ngf
        idx, w = up
        upsample = "basic" if idx == 1 else "bilinear"
        out_nc = int(w.shape[1]) if upsample == "basic" else int(w.shape[0])  # ConvTranspose2d: (in, out, k, k)
        found = {"where_add": "all", "netG": _G_DEPTH[depth], "ngf": ngf, "nz": nz, "input_nc": int(first.shape[1]) - nz,
                 "output_nc": out_nc, "upsample": upsample}
    else:
        first = state.get("model.model.0.weight")
        if first is None or first.dim() != 4 or first.shape[-1] != 4:
            return None
        depth = max(k.split(".").count("model") for k in state) - 1
        # the outermost block: [down-conv, submodule, nl, up..., tanh]; the first 4-D weight after the submodule
        up = [(int(m.group(1)), v) for k, v in state.items() if (m := re.fullmatch(r"model\.model\.(\d+)\.weight", k)) and v.dim() == 4]
        up = sorted(u for u in up if u[0] > 1)
        if depth not in _G_DEPTH or not up:
            return None
        idx, w = up[0]
        upsample = "basic" if idx == 3 else "bilinear"
        out_nc = int(w.shape[1]) if upsample == "basic" else int(w.shape[0])
        nz = nz_hint if nz_hint is not None else 8  # z and image channels share the first conv: nz must come from elsewhere
        found = {"where_add": "input", "netG": _G_DEPTH[depth], "ngf": int(first.shape[0]), "nz": nz,
                 "input_nc": int(first.shape[1]) - nz, "output_nc": out_nc, "upsample": upsample}
    if _has_batch_norm(state):
        found["norm"] = "batch"
    return found


def detect_encoder(state: Mapping[str, torch.Tensor]) -> dict[str, Any] | None:
    """The ModelConfig fields an encoder state dict implies (netE, nef, nz, output_nc), or None."""
    first, fc = state.get("conv.0.weight"), state.get("fc.0.weight")
    if first is None or fc is None or first.dim() != 4 or "fcVar.0.weight" not in state:
        return None
    blocks = {k.split(".")[1] for k in state if re.match(r"conv\.\d+\.shortcut\.", k)}
    if blocks:
        n = len(blocks) + 1
        netE = {5: "resnet_256", 4: "resnet_128"}.get(n)
    else:
        n = sum(1 for k, v in state.items() if re.fullmatch(r"conv\.\d+\.weight", k) and v.dim() == 4)
        netE = {5: "conv_256", 4: "conv_128"}.get(n)
    if netE is None:
        return None
    found = {"netE": netE, "nef": int(first.shape[0]), "nz": int(fc.shape[0]), "output_nc": int(first.shape[1])}
    if _has_batch_norm(state):
        found["norm"] = "batch"
    return found


def _describe(found: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in found.items())


def find_files(path: Path) -> tuple[Path, Path | None]:
    """(generator file, encoder file or None) for a folder or a ``*_net_G.pth`` file."""
    if path.is_dir():
        gs = [path / "latest_net_G.pth"] if (path / "latest_net_G.pth").is_file() else sorted(path.glob("*net_G.pth"))
        if not gs:
            raise FileNotFoundError(f"{path}: no generator checkpoint (latest_net_G.pth or <epoch>_net_G.pth) in this folder")
        if len(gs) > 1:
            raise ValueError(f"{path}: several generator checkpoints ({', '.join(g.name for g in gs)}); pass the file you mean")
        g = gs[0]
    else:
        g = path
    e = None
    if g.name.endswith("net_G.pth"):
        cand = g.with_name(g.name[: -len("net_G.pth")] + "net_E.pth")
        e = cand if cand.is_file() else None
    return g, e


def _read_options(g: Path) -> dict[str, Any]:
    from styleengine.nn import find_options_file, read_reference_options

    opt_path = find_options_file(g)
    if opt_path is None:
        return {}
    try:
        opts = read_reference_options(opt_path)
    except ValueError as exc:
        log.warning("ignoring %s: %s", opt_path, exc)
        return {}
    picked = opts.pick(OPTION_FIELDS)
    if "norm" in picked and picked["norm"] not in ("instance", "batch", "none"):
        picked.pop("norm")
    log.info("%s: options %s", opt_path, picked)
    return picked


def import_reference(style: BicycleGAN, path: Path) -> None:
    """Load reference checkpoints into ``style`` (see the module docstring)."""
    from styleengine.nn import CheckpointMismatchError, load_into, load_reference_state_dict

    g_path, e_path = find_files(Path(path))
    g_state = load_reference_state_dict(g_path)
    e_state = load_reference_state_dict(e_path) if e_path is not None else None
    enc = detect_encoder(e_state) if e_state is not None else None
    if e_state is not None and enc is None:
        raise ValueError(f"{e_path} is not a BicycleGAN encoder checkpoint (expected conv.*, fc.0.*, fcVar.0.* keys; found {', '.join(list(e_state)[:4])})")
    if detect_encoder(g_state) is not None:
        raise ValueError(f"{g_path} holds an encoder; pass the generator checkpoint (latest_net_G.pth) or the folder holding both")
    options = _read_options(g_path)
    found = detect_generator(g_state, enc["nz"] if enc else options.get("nz", style.model_config.nz))
    if found is None:
        raise ValueError(
            f"{g_path} is not a BicycleGAN generator checkpoint (expected G_Unet_add_all keys model.down.0.* or "
            f"G_Unet_add_input keys model.model.0.*; found {', '.join(list(g_state)[:4])})"
        )
    if found["input_nc"] not in (1, 3) or found["output_nc"] not in (1, 3):
        raise ValueError(f"{g_path}: generator with input_nc={found['input_nc']}, output_nc={found['output_nc']}; BicycleGAN here takes 1 or 3")
    if enc is not None:
        clash = {k: (found[k], enc[k]) for k in ("nz", "output_nc") if k in found and found[k] != enc[k]}
        if clash or enc.get("norm", "instance") != found.get("norm", "instance"):
            raise ValueError(f"{g_path} ({_describe(found)}) and {e_path} ({_describe(enc)}) are not one model")
        found.update({k: v for k, v in enc.items() if k not in found})
    else:
        log.warning("%s: no encoder checkpoint beside it (%s); a style image will be encoded by a random encoder",
                    g_path, g_path.name.replace("net_G", "net_E"))
    # what the weights cannot tell: opt.txt beside them, else the configuration
    for k, v in options.items():
        if k not in found and k != "nz":
            found[k] = v
    cfg = style.model_config
    explicit = cfg.model_fields_set
    conflicts = {k: v for k, v in found.items() if k in explicit and getattr(cfg, k) != v}
    if conflicts:
        wanted = ", ".join(f"{k}={getattr(cfg, k)}" for k in conflicts)
        raise CheckpointMismatchError(
            f"{g_path} holds a generator with {_describe(found)}, but the model config asks for {wanted}; "
            f"use {', '.join(f'{k}={v}' for k, v in conflicts.items())} (or leave them unset)",
            missing=[], unexpected=[], shape_mismatches=[], hint=_describe(found),
        )
    updates = {k: v for k, v in found.items() if getattr(cfg, k) != v}
    if updates:
        log.info("%s: using the checkpoint's architecture %s", g_path, updates)
        style.model_config = style.ModelConfig(**{**{k: getattr(cfg, k) for k in explicit}, **found})
        style._modules = None
    for name, file, state in (("generator", g_path, g_state), ("encoder", e_path, e_state)):
        if state is None:
            continue
        try:
            load_into(style.modules[name], state)
        except CheckpointMismatchError as exc:
            raise CheckpointMismatchError(
                f"{file}: {exc}", missing=exc.missing, unexpected=exc.unexpected, shape_mismatches=exc.shape_mismatches, hint=exc.hint
            ) from exc
    style.training_state = {}
