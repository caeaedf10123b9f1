"""The reference's formats (naoto0804/pytorch-AdaIN): finding and reading its checkpoints, its release.

The reference ships two files: ``vgg_normalised.pth`` (the encoder, keys ``0.weight`` ... ``51.bias``; its
README spells it ``vgg_normalized.pth``) and ``decoder.pth`` (keys ``1.weight`` ... ``28.bias``); its
``train.py`` writes ``decoder_iter_<N>.pth.tar`` files with the decoder alone.  All of them are read with
``torch.load(weights_only=True)`` (:func:`styleengine.nn.vgg.read_state_dict`), never unpickled.

Where the encoder comes from when only a decoder file is given, in order: an explicit ``vgg`` argument,
the ``STYLEENGINE_ADAIN_VGG`` environment variable, a ``vgg_normalised.pth`` beside the decoder.

torch is imported inside the functions, so the style class can declare the release without it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from styleengine.pull import Pretrained

if TYPE_CHECKING:
    import torch

    from .nets import AdaINDecoder, AdaINNet

RELEASE = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0"
VGG_ENV = "STYLEENGINE_ADAIN_VGG"
DECODER_NAMES = ("decoder.pth", "decoder.pth.tar", "decoder.safetensors")
VGG_NAMES = ("vgg_normalised.pth", "vgg_normalized.pth", "vgg_normalised.safetensors", "vgg_normalized.safetensors")
_ITER = re.compile(r"^decoder_iter_(\d+)\.pth(\.tar)?$")

HOW_TO_GET = (
    "get them with `engine pull adain` (online), or download decoder.pth and vgg_normalised.pth from "
    f"{RELEASE.rsplit('/download', 1)[0]}/tag/v0.0.0 and pass the folder holding both with --weights DIR"
)

PRETRAINED: dict[str, Pretrained] = {
    "default": Pretrained(
        url=f"{RELEASE}/decoder.pth",
        # Not downloaded by us (no network here): the sha256 values are the ones several independent projects
        # record for these release assets (vgg_normalised.pth is 80,102,481 bytes).  A mismatch fails the pull.
        sha256="379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472",
        description="naoto0804/pytorch-AdaIN release v0.0.0: decoder.pth + vgg_normalised.pth (converted from the Lua models)",
        companions=(
            Pretrained(url=f"{RELEASE}/vgg_normalised.pth", sha256="804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a"),
        ),
    )
}



def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (folder / n).is_file():
            return folder / n
    return None


def _latest_iteration(folder: Path) -> Path | None:
    found = [(int(m[1]), p) for p in folder.iterdir() if (m := _ITER.match(p.name))]
    return max(found)[1] if found else None


def find_reference_files(path: str | os.PathLike[str], vgg: str | os.PathLike[str] | None = None) -> tuple[Path, Path]:
    """``(decoder file, vgg file)`` for a folder holding both, or for a decoder file plus an encoder source."""
    path = Path(path)
    if path.is_dir():
        decoder = _first(path, DECODER_NAMES) or _latest_iteration(path)
        if decoder is None:
            raise FileNotFoundError(
                f"{path}: no AdaIN decoder ({', '.join(DECODER_NAMES)} or decoder_iter_N.pth.tar); {HOW_TO_GET}"
            )
    elif path.is_file():
        decoder = path
    else:
        raise FileNotFoundError(f"weights not found: {path}")
    folder = decoder.parent
    source = Path(vgg) if vgg else Path(os.environ[VGG_ENV]) if os.environ.get(VGG_ENV) else _first(folder, VGG_NAMES)
    if source is None:
        raise FileNotFoundError(
            f"{decoder}: the AdaIN decoder needs its VGG encoder (vgg_normalised.pth): put it beside the decoder, "
            f"pass the folder holding both, or set {VGG_ENV}=PATH; {HOW_TO_GET}"
        )
    if not source.is_file():
        raise FileNotFoundError(f"VGG encoder weights not found: {source}")
    return decoder, source


def encoder_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """relu4_1 encoder weights (keys ``0.weight`` ... ``28.bias``) from ``vgg_normalised.pth``, its safetensors
    twin, or an AdaIN engine checkpoint (its ``encoder.*`` tensors)."""
    from styleengine.nn.vgg import NormalisedVGG, load_vgg_normalised
    from styleengine.weights import is_engine_checkpoint, load_checkpoint

    path = Path(path)
    if is_engine_checkpoint(path):
        tensors = load_checkpoint(path).tensors
        state = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
        if not state:
            raise ValueError(f"{path}: an engine checkpoint without encoder.* tensors (not an AdaIN checkpoint?)")
        model = NormalisedVGG(upto="relu4_1")
        model.load_state_dict(state, strict=True)
        return model.state_dict()
    return load_vgg_normalised(path, upto="relu4_1").state_dict()


def load_reference_decoder(path_or_state: Any) -> AdaINDecoder:
    """Import naoto0804's ``decoder.pth`` / ``decoder_iter_*.pth.tar`` (keys ``1.weight`` ... ``28.bias``).

    ``path_or_state``: a path or a ``{key: tensor}`` mapping.  Read through ``torch.load(weights_only=True)``
    (or safetensors); mismatched keys raise ``ValueError``.
    """
    from styleengine.nn.vgg import load_state_dict_checked, read_state_dict

    from .nets import AdaINDecoder

    state = read_state_dict(path_or_state)
    hint = ""
    if "0.weight" in state:
        hint = "Index 0 holds weights, so this looks like the VGG encoder (vgg_normalised.pth), not the decoder."
    source = "state dict" if isinstance(path_or_state, Mapping) else str(path_or_state)
    decoder = AdaINDecoder()
    load_state_dict_checked(decoder, state, source=source, hint=hint)
    return decoder


def load_reference_adain(vgg: Any, decoder: Any) -> AdaINNet:
    """An :class:`~styleengine_adain.nets.AdaINNet` from the reference's ``vgg_normalised.pth`` and ``decoder.pth``
    (paths or state dicts)."""
    from styleengine.nn.vgg import load_vgg_normalised

    from .nets import AdaINNet

    return AdaINNet(load_vgg_normalised(vgg, upto="relu4_1"), load_reference_decoder(decoder))
