"""docs/reference.md is generated from the hook and type docstrings and must be in sync with them."""

from __future__ import annotations

from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


def test_reference_page_is_in_sync_with_the_docstrings() -> None:
    from styleengine.reference import render

    assert PAGE.is_file(), "docs/reference.md is missing: python -m styleengine.reference --write docs/reference.md"
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/reference.md is out of date: run python -m styleengine.reference --write docs/reference.md")


def test_every_hook_and_public_name_is_on_the_page() -> None:
    import styleengine
    from styleengine import hookspecs

    text = PAGE.read_text(encoding="utf-8")
    hooks = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "styleengine_spec")]
    assert hooks and all(f"### `{h}` — hookspec" in text for h in hooks), "a hookspec is missing from reference.SECTIONS"
    public = [n for n in styleengine.__all__ if n[0].isupper() or n == "image_tensor"]
    missing = [n for n in public if f"### `{n}`" not in text and n != "API_VERSION"]
    assert not missing, f"public names missing from the reference (add them to styleengine.reference.SECTIONS): {missing}"


def test_check_mode_reports_a_stale_page(tmp_path: Path) -> None:
    from styleengine.reference import main

    stale = tmp_path / "reference.md"
    stale.write_text("old\n")
    assert main(["--check", str(stale)]) == 1
    assert main(["--write", str(stale)]) == 0 and main(["--check", str(stale)]) == 0
