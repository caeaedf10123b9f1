"""BentoML entry point at the repository root, for `bentoml serve` and `bentoml build` run here.

The service itself is generic and lives in the installed package (styleengine.serving.service); which style,
runtime and model it serves comes from the arguments: `args:` in bentofile.yaml, overridden with
`--arg key=value` (see styleengine.serving.args.ServeArgs).
"""

from styleengine.serving.service import StyleAPI  # noqa: F401  (its runner service, in the split topology, is found through it)
