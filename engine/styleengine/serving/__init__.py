"""Serving: one generic BentoML service for every style (``styleengine.serving.service``).

Import-light on purpose: ``args`` (ServeArgs), ``batching``, ``batcher``, ``errors``, ``guard``, ``lifecycle``,
``preflight`` and ``runner`` do not import BentoML (nor torch, until a model is loaded); ``service`` (the BentoML services, built from ``bentoml.use_arguments``), ``schema`` (the
generated request model) and ``bento`` (model store, Bento builds) do.  See README "Serving".
"""
