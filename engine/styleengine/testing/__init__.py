"""Conformance suite for plugin authors (opt-in).

Two ways in, the same checks (see :mod:`styleengine.testing.conformance` for the list):

1. The mixin class: subclass :class:`StyleConformance`, name the style and give a tiny model config::

       from styleengine.testing import StyleConformance

       class TestMyStyle(StyleConformance):
           style = "my-style"                  # the name its entry point registers
           model_config = {"channels": 4}     # keep the network tiny for tests
           image_size = (32, 48)              # (height, width) of the test images

   or, in one line, ``TestMyStyle = conformance_suite("my-style", model_config={"channels": 4})``.

2. The pytest plugin, in a ``conftest.py``: ``pytest_plugins = ["styleengine.testing"]``.  It marks every
   conformance check ``conformance`` (``pytest -m conformance`` runs only them), adds the engine's version and
   installed styles to the report header, and, for styles named in the ``styleengine_conformance`` ini option
   (one line per style: ``NAME`` or ``NAME {"model_config": {...}, "image_size": [32, 48]}``), runs the whole
   suite without a test class at all.

Nothing runs unless a test class inherits the mixin or the plugin is enabled.
"""

from .conformance import CHECKS, StyleConformance, conformance_suite
from .plugin import (
    pytest_addoption,
    pytest_collect_file,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_report_header,
)

__all__ = ["CHECKS", "StyleConformance", "conformance_suite"]
