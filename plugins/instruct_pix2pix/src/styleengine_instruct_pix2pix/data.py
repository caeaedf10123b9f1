"""Training data: (input image, edited image, instruction) triplets from two folder layouts, checked up front.

**Reference layout** (timbrooks/instruct-pix2pix ``edit_dataset.py``, the released ``clip-filtered-dataset``)::

    DATA/seeds.json                 [["<prompt folder>", [seed, seed, ...]], ...]
    DATA/<prompt folder>/prompt.json {"input": ..., "edit": "<instruction>", "output": ...}
    DATA/<prompt folder>/<seed>_0.jpg   input image
    DATA/<prompt folder>/<seed>_1.jpg   edited image

One dataset item per prompt folder; each time it is drawn, one of its seeds is picked at random (as the
reference's ``__getitem__`` does).  ``split`` applies the reference's 90 / 5 / 5 % train / val / test split of
``seeds.json`` (or ``all``).

**Simple layout**::

    DATA/input/<file>               input images
    DATA/edited/<file>              edited images: same relative path (or same stem, any image suffix)
    DATA/prompts.jsonl              one {"file": "<file>", "instruction": "..."} per line

Preflight (before any training step) reports *every* problem by path, through the engine's bad-file policy
(``--on-bad-file fail|skip``): a missing or unlisted edited image, an input without an instruction, an empty
instruction, a malformed line, and every file the engine's image decoder refuses (truncated, not an image,
too large...).  A triplet with any problem is dropped as a whole under ``skip``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from styleengine.data import BadFile, DatasetError, OnBadFile, PreflightReport, find_images, preflight_images

log = logging.getLogger(__name__)

SEEDS_FILE = "seeds.json"
PROMPT_FILE = "prompt.json"
PROMPTS_JSONL = "prompts.jsonl"
#: The reference's ``EditDataset`` split fractions (train, val, test).
SPLITS = (0.9, 0.05, 0.05)

Layout = Literal["reference", "simple"]
Split = Literal["all", "train", "val", "test"]


@dataclass
class EditItem:
    """One dataset item: an instruction and the (input, edited) image pairs it may be drawn with."""

    key: str
    instruction: str
    pairs: list[tuple[Path, Path]] = field(default_factory=list)


@dataclass
class EditDataset:
    root: Path
    layout: Layout
    items: list[EditItem]
    report: PreflightReport

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_pairs(self) -> int:
        return sum(len(i.pairs) for i in self.items)


def detect_layout(root: Path) -> Layout:
    if (root / SEEDS_FILE).is_file():
        return "reference"
    if (root / PROMPTS_JSONL).is_file() or (root / "input").is_dir():
        return "simple"
    raise DatasetError(
        f"{root}: not an InstructPix2Pix dataset. Expected either the reference layout (seeds.json, and per prompt "
        f"folder prompt.json + <seed>_0.jpg / <seed>_1.jpg) or input/, edited/ and prompts.jsonl "
        '({"file": ..., "instruction": ...} per line)'
    )


def _split(entries: list, split: Split) -> list:
    if split == "all":
        return entries
    n = len(entries)
    a = int(n * SPLITS[0])
    b = int(n * (SPLITS[0] + SPLITS[1]))
    return {"train": entries[:a], "val": entries[a:b], "test": entries[b:]}[split]


def _read_json(path: Path, bad: list[BadFile]) -> object | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        bad.append(BadFile(path, f"cannot read it as JSON ({exc})", "unreadable"))
        return False


def scan_reference(root: Path, split: Split = "all") -> tuple[list[EditItem], list[BadFile]]:
    bad: list[BadFile] = []
    seeds_path = root / SEEDS_FILE
    try:
        entries = json.loads(seeds_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{seeds_path}: cannot read it as JSON ({exc})", [BadFile(seeds_path, str(exc), "unreadable")]) from exc
    if not isinstance(entries, list):
        raise DatasetError(f"{seeds_path}: expected a list of [prompt folder, [seeds...]] entries")
    items: list[EditItem] = []
    for n, entry in enumerate(_split(entries, split)):
        if not (isinstance(entry, list | tuple) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], list)):
            bad.append(BadFile(seeds_path, f"entry {n} is not [prompt folder, [seeds...]]: {str(entry)[:80]}", "malformed"))
            continue
        name, seeds = entry
        folder = root / name
        prompt_path = folder / PROMPT_FILE
        prompt = _read_json(prompt_path, bad)
        if prompt is False:
            continue
        instruction = prompt.get("edit") if isinstance(prompt, dict) else None
        if prompt is None:
            bad.append(BadFile(prompt_path, "missing prompt.json (the instruction)", "no_instruction"))
            continue
        if not isinstance(instruction, str) or not instruction.strip():
            bad.append(BadFile(prompt_path, "missing or empty instruction (the 'edit' key)", "no_instruction"))
            continue
        item = EditItem(name, instruction.strip())
        for seed in seeds:
            src, dst = folder / f"{seed}_0.jpg", folder / f"{seed}_1.jpg"
            if not src.is_file():
                bad.append(BadFile(src, "missing input image", "unpaired"))
            elif not dst.is_file():
                bad.append(BadFile(dst, f"missing edited image for {src.name}", "unpaired"))
            else:
                item.pairs.append((src, dst))
        if item.pairs:
            items.append(item)
    return items, bad


def _edited_for(edited_dir: Path, rel: str) -> Path | None:
    exact = edited_dir / rel
    if exact.is_file():
        return exact
    stem = Path(rel).with_suffix("")
    matches = [p for p in exact.parent.glob(stem.name + ".*") if p.is_file()] if exact.parent.is_dir() else []
    matches = [p for p in matches if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp"}]
    return sorted(matches)[0] if len(matches) >= 1 else None


def scan_simple(root: Path) -> tuple[list[EditItem], list[BadFile]]:
    bad: list[BadFile] = []
    input_dir, edited_dir, prompts = root / "input", root / "edited", root / PROMPTS_JSONL
    for d in (input_dir, edited_dir):
        if not d.is_dir():
            raise DatasetError(f"{d}: missing folder (the simple layout is input/, edited/ and {PROMPTS_JSONL})")
    if not prompts.is_file():
        raise DatasetError(f"{prompts}: missing (one {{\"file\": ..., \"instruction\": ...}} per line)")
    items: list[EditItem] = []
    listed: set[Path] = set()
    try:
        lines = prompts.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{prompts}: cannot read it ({exc})") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(BadFile(prompts, f"line {n}: not JSON ({exc.msg})", "malformed"))
            continue
        rel = rec.get("file") if isinstance(rec, dict) else None
        if not isinstance(rel, str) or not rel.strip():
            bad.append(BadFile(prompts, f"line {n}: no \"file\"", "malformed"))
            continue
        src = input_dir / rel
        listed.add(src.resolve())
        instruction = rec.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            bad.append(BadFile(src, f"missing or empty instruction ({PROMPTS_JSONL} line {n})", "no_instruction"))
            continue
        if not src.is_file():
            bad.append(BadFile(src, f"missing input image ({PROMPTS_JSONL} line {n})", "unpaired"))
            continue
        dst = _edited_for(edited_dir, rel)
        if dst is None:
            bad.append(BadFile(edited_dir / rel, f"missing edited image for {src}", "unpaired"))
            continue
        items.append(EditItem(rel, instruction.strip(), [(src, dst)]))
    for img in find_images(input_dir):
        if img.resolve() not in listed:
            bad.append(BadFile(img, f"no instruction: not listed in {PROMPTS_JSONL}", "no_instruction"))
    return items, bad


def load_dataset(
    root: str | Path,
    *,
    on_bad_file: OnBadFile = "fail",
    split: Split = "all",
    full_decode: bool = True,
    progress: bool = False,
) -> EditDataset:
    """Scan, preflight (every image through the engine's decoder) and apply the bad-file policy."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--data: {root} is not a folder")
    layout = detect_layout(root)
    items, bad = scan_reference(root, split) if layout == "reference" else scan_simple(root)
    images = sorted({p for it in items for pair in it.pairs for p in pair})
    decoded = preflight_images(images, full_decode=full_decode, progress=progress)
    broken = {b.path for b in decoded.bad}
    bad += decoded.bad
    kept: list[EditItem] = []
    for it in items:
        for src, dst in it.pairs:
            if src in broken or dst in broken:
                other = dst if src in broken else src
                bad.append(BadFile(other, f"dropped: its partner {src if src in broken else dst} cannot be decoded", "unpaired"))
        it.pairs = [(s, d) for s, d in it.pairs if s not in broken and d not in broken]
        if it.pairs:
            kept.append(it)
    report = PreflightReport(ok=[s for it in kept for s, _ in it.pairs], bad=_dedupe(bad))
    try:
        report.apply(on_bad_file)
    except DatasetError as exc:
        if not report.ok and not report.bad:
            raise DatasetError(f"{root}: no training triplets found ({layout} layout)") from exc
        raise DatasetError(f"{root}: {exc}", exc.bad) from exc
    log.info("%s (%s layout): %d items, %d pairs; %d problem(s)", root, layout, len(kept), sum(len(i.pairs) for i in kept), len(report.bad))
    return EditDataset(root, layout, kept, report)


def _dedupe(bad: Sequence[BadFile]) -> list[BadFile]:
    seen: set[tuple[Path, str]] = set()
    out = []
    for b in bad:
        if (b.path, b.reason) not in seen:
            seen.add((b.path, b.reason))
            out.append(b)
    return out
