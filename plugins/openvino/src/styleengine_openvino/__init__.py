"""``openvino``: an OpenVINO runtime for styleengine, registered through the ``register_runtimes`` hook.

Registration is light: this module imports neither openvino nor torch; :mod:`.runtime` imports
openvino on first use (``availability()`` or ``load``).  See the plugin README.
"""

from __future__ import annotations

from typing import Any

import styleengine

__all__ = ["register_runtimes"]
__version__ = "0.1.0"


@styleengine.hookimpl
def register_runtimes(register: Any) -> None:
    from .runtime import OpenVINORuntime

    register(OpenVINORuntime)
