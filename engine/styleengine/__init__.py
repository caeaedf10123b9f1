"""styleengine: a plugin-based inference and serving engine for image style-transfer models."""

from __future__ import annotations

__version__ = "0.1.0"

#: Major version of the plugin API.  A Style declaring another ``api_version`` is refused at registration.
API_VERSION = 1

from .hookspecs import hookimpl, hookspec  # noqa: E402
from .spec import Dim, GraphSpec, TensorSpec, Tolerance, image_tensor  # noqa: E402
from .style import (  # noqa: E402
    Capability,
    ImageField,
    InputContract,
    Style,
    StyleConfig,
    StyleRequest,
    StyleResult,
    TextField,
)

__all__ = [
    "API_VERSION",
    "Capability",
    "Dim",
    "GraphSpec",
    "ImageField",
    "InputContract",
    "Style",
    "StyleConfig",
    "StyleRequest",
    "StyleResult",
    "TensorSpec",
    "TextField",
    "Tolerance",
    "__version__",
    "hookimpl",
    "hookspec",
    "image_tensor",
]
