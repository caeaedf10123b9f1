"""Generate ``docs/reference.md``: every hook and every public type, from their docstrings.

``python -m styleengine.reference --write docs/reference.md`` rewrites the page; ``--check`` exits 1 when the
page is out of date (``tests/test_reference.py`` runs the same comparison), so a docstring change and the
page never drift apart.  Class attributes are documented by ``#:`` comments above them, as Sphinx reads them.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

HEADER = """\
# styleengine plugin API reference

Generated from the docstrings by `python -m styleengine.reference --write docs/reference.md`; do not edit by
hand (`tests/test_reference.py` fails when this page and the code differ). The walk-through is
[writing-a-plugin.md](writing-a-plugin.md); the compatibility policy is at its end.

Plugin API version: **{api}** (`styleengine.API_VERSION`).
"""

#: (section title, module, names) in page order.
SECTIONS: list[tuple[str, str, list[str]]] = [
    ("Hooks", "styleengine.hookspecs", ["register_styles", "register_runtimes", "register_commands", "style_train", "style_export",
                                         "style_infer", "export_onnx", "build_engine"]),
    ("Style and its declarations", "styleengine.style", ["Style", "Capability", "StyleConfig", "InputContract", "ImageField",
                                                         "TextField", "StyleRequest", "StyleResult", "WeightsRequiredError"]),
    ("Graphs", "styleengine.spec", ["GraphSpec", "TensorSpec", "Dim", "Derived", "Tolerance", "image_tensor", "SpecError"]),
    ("Sessions", "styleengine.runtime.base", ["Session", "SessionOptions"]),
    ("Pre- and post-processing", "styleengine.preprocess", ["fit", "restore", "Fitted", "to_tensor", "from_tensor", "resize", "SizeError"]),
    ("Training", "styleengine.training", ["TrainContext", "TrainResult"]),
    ("Conformance suite", "styleengine.testing.conformance", ["StyleConformance", "conformance_suite", "CHECKS"]),
    ("Static checks", "styleengine.checks", ["check_style", "Finding", "check_engine", "PluginReport"]),
]


def _doc(obj: Any) -> str:
    doc = inspect.getdoc(obj) if not isinstance(obj, tuple | list | str | int) else None
    return doc.strip() if doc else "*(no docstring)*"


def _sig(name: str, obj: Any) -> str:
    """``name(params) -> return`` with annotations as written in the source (no quotes)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name

    def ann(a: Any) -> str:
        return a if isinstance(a, str) else inspect.formatannotation(a)

    parts: list[str] = []
    star_done = False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        text = ("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "") + p.name
        if p.kind is p.VAR_POSITIONAL:
            star_done = True
        if p.annotation is not p.empty:
            text += f": {ann(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}" if p.annotation is not p.empty else f"={p.default!r}"
        parts.append(text)
    ret = f" -> {ann(sig.return_annotation)}" if sig.return_annotation is not sig.empty else ""
    return f"{name}({', '.join(parts)}){ret}"


def _attr_comments(cls: type) -> dict[str, str]:
    """``#:`` comments above class attributes, by attribute name."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in lines[1:]:
        s = line.strip()
        if s.startswith("#:"):
            pending.append(s[2:].strip())
            continue
        if pending and line.startswith("    ") and not line.startswith("     "):
            head = s.split("=", 1)[0].split(":", 1)[0].strip()
            if head.isidentifier():
                out[head] = " ".join(pending)
        pending = []
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _public_methods(cls: type) -> list[tuple[str, Any]]:
    out = []
    for name, member in cls.__dict__.items():
        if name.startswith("_"):
            continue
        fn = member.__func__ if isinstance(member, classmethod | staticmethod) else member
        if isinstance(member, property):
            out.append((name, member))
        elif inspect.isfunction(fn):
            out.append((name, fn))
    return out


def _render_class(name: str, cls: type) -> list[str]:
    kind = "enum" if issubclass(cls, enum.Enum) else "exception" if issubclass(cls, BaseException) else "class"
    lines = [f"### `{name}` ({kind})", ""]
    if dataclasses.is_dataclass(cls):
        lines += ["```python", _sig(name, cls), "```", ""]
    lines += [_doc(cls), ""]
    if issubclass(cls, enum.Enum):
        lines += ["Members: " + ", ".join(f"`{m.name}` (`{m.value!r}`)" for m in cls), ""]
        return lines
    comments = _attr_comments(cls)
    if comments:
        lines += ["| attribute | meaning |", "|---|---|"]
        lines += [f"| `{a}` | {_cell(c)} |" for a, c in comments.items()]
        lines.append("")
    for mname, member in _public_methods(cls):
        if isinstance(member, property):
            lines += [f"- **`{mname}`** (property): {_doc(member).splitlines()[0] if member.__doc__ else ''}".rstrip(": ")]
            continue
        if mname.startswith("test_"):
            continue
        sig = _sig(mname, member).replace("(self, ", "(").replace("(self)", "()").replace("(cls, ", "(").replace("(cls)", "()")
        lines += [f"- **`{sig}`**", ""]
        if inspect.getdoc(member):
            lines += ["  " + _doc(member).replace("\n", "\n  "), ""]
    if name == "StyleConformance":
        lines += ["| check (test method) | what it checks |", "|---|---|"]
        lines += [f"| `{m}` | {_cell(_doc(f))} |" for m, f in _public_methods(cls) if m.startswith("test_")]
        lines.append("")
    return lines


def render() -> str:
    import styleengine

    out = [HEADER.format(api=styleengine.API_VERSION)]
    for title, module_name, names in SECTIONS:
        module = importlib.import_module(module_name)
        out += [f"## {title}", "", f"Module `{module_name}`.", ""]
        if module_name == "styleengine.hookspecs":
            out += [_doc(module), ""]
        for name in names:
            obj = getattr(module, name)
            if isinstance(obj, type):
                out += _render_class(name, obj)
            elif callable(obj):
                marks = []
                opts = getattr(obj, "styleengine_spec", None)
                if opts:
                    marks = [k for k in ("firstresult", "historic", "warn_on_impl") if opts.get(k)]
                tag = f" — hookspec ({', '.join(marks)})" if marks else " — hookspec" if opts is not None else ""
                out += [f"### `{name}`{tag}", "", "```python", _sig(name, obj), "```", "", _doc(obj), ""]
            else:
                out += [f"### `{name}`", "", f"`{obj!r}`", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    text = render()
    if args[:1] == ["--write"] and len(args) == 2:
        Path(args[1]).parent.mkdir(parents=True, exist_ok=True)
        Path(args[1]).write_text(text, encoding="utf-8")
        return 0
    if args[:1] == ["--check"] and len(args) == 2:
        current = Path(args[1]).read_text(encoding="utf-8") if Path(args[1]).is_file() else ""
        if current != text:
            print(f"{args[1]} is out of date: run python -m styleengine.reference --write {args[1]}", file=sys.stderr)
            return 1
        return 0
    if not args:
        sys.stdout.write(text)
        return 0
    print("usage: python -m styleengine.reference [--write PATH | --check PATH]", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
