"""The web playground mounted at ``/ui``: plain HTML/JS, no build step, no third-party assets.

``/ui/`` serves ``static/index.html``; the page reads ``/ui/info.json`` (the style's image and text fields,
its ``Config`` JSON schema, the limits) and generates the upload and parameter form from it, so every
style gets a playground without style-specific code: an InstructPix2Pix ``instruction`` text field shows
as a text box, AdaIN's several ``style`` images as a multi-file input.  It posts to ``/stylize.json`` and
shows the result beside the input with the latency breakdown, the seed and the batch size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STATIC = Path(__file__).with_name("static")

#: Strict defaults for the playground's pages: same-origin only, no inline script, images from blobs.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def style_info(style_cls: Any, args: Any, max_images_per_field: int, *, defaults: dict[str, Any] | None = None,
               random_weights: bool = False) -> dict[str, Any]:
    """What the playground (and any client) needs to build a request for this deployment."""
    c = style_cls.inputs
    params = style_cls.Config.model_json_schema()
    try:
        choices = style_cls.text_choices(dict(getattr(args, "model_set", None) or {}))
    except Exception:  # noqa: BLE001 - suggestions only: never a reason not to serve
        choices = {}
    for name, value in (defaults or {}).items():  # this server's defaults
        if name in params.get("properties", {}):
            params["properties"][name]["default"] = value
    return {
        "style": style_cls.name,
        "random_weights": random_weights,
        "description": style_cls.description,
        "runtime": args.runtime,
        "variant": args.variant,
        "seeded": c.seeded,
        "images": [
            {"name": f.name, "description": f.description, "required": f.required, "multiple": f.multiple,
             "max_files": max_images_per_field if f.multiple else 1}
            for f in c.images
        ],
        "texts": [{"name": t.name, "description": t.description, "required": t.required, "max_length": t.max_length,
                   "choices": list(choices.get(t.name, []))} for t in c.texts],
        "params": params,
        "limits": {
            "max_request_bytes": args.max_request_bytes,
            "max_image_bytes": args.max_image_bytes,
            "max_pixels": args.max_pixels,
            "max_side": min(args.max_side, c.max_side),
            "min_side": c.min_side,
            "formats": ["image/png", "image/jpeg", "image/webp"],
        },
        "endpoints": {"image": "/stylize", "json": "/stylize.json", "openapi": "/docs.json",
                      # long jobs: the playground submits a task and shows its progress and intermediate image
                      "task": "/stylize_task" if style_cls.long_running and not args.split else None},
    }


def make_app(info: dict[str, Any]) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    def static(name: str, media_type: str) -> Any:
        async def endpoint(_: Any) -> Response:
            return FileResponse(STATIC / name, media_type=media_type, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

        return endpoint

    async def info_view(_: Any) -> Response:
        return JSONResponse(info, headers={"Cache-Control": "no-cache"})

    return Starlette(
        routes=[
            Route("/", static("index.html", "text/html; charset=utf-8")),
            Route("/app.js", static("app.js", "text/javascript; charset=utf-8")),
            Route("/style.css", static("style.css", "text/css; charset=utf-8")),
            Route("/info.json", info_view),
        ]
    )
