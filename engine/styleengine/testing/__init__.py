"""Conformance suite for plugin authors.

Subclass :class:`StyleConformance` in your plugin's tests and pytest runs every check against your
style (opt-in: nothing runs unless a test class inherits it)::

    from styleengine.testing import StyleConformance
    from my_plugin import MyStyle

    class TestMyStyle(StyleConformance):
        style_class = MyStyle
        model_config = {"channels": 4}     # keep the network tiny for tests
        image_size = (32, 48)              # (height, width) of the test image
"""

from .conformance import StyleConformance

__all__ = ["StyleConformance"]
