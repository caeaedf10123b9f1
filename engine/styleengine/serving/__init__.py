"""Serving: one generic BentoML service for every style (``styleengine.serving.service``).

Import-light on purpose: ``args`` (ServeArgs), ``batching``, ``errors``, ``limits`` and ``runner`` do not
import BentoML; ``service`` (the BentoML services, built from ``bentoml.use_arguments``), ``schema`` (the
generated request model) and ``bento`` (model store, Bento builds) do.  See README "Serving".
"""
