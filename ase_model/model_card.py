"""What `ase-mllm info` says first about a model folder: its name, version, quality table, sources and size.

Read from the folder's model card (README.md, as the Hugging Face Hub has it) and its files, torch-free:

    card = describe(default_model_dir())
    print(card["name"], card["version"], card["size_bytes"])
    for table in card["quality"]:
        print(table["header"], table["rows"])
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

__all__ = ["describe", "format_card", "markdown_tables"]

_WEIGHTS = (".safetensors", ".bin", ".pt", ".gguf")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ase-mllm")
    except PackageNotFoundError:
        return "unknown"


def markdown_tables(text: str) -> list[dict]:
    """The pipe tables of a markdown text, each with the heading it sits under.

    Args:
        text: markdown.

    Returns a list of {"section": heading, "header": [cells], "rows": [[cells], ...]}.
    """
    tables, heading, block = [], "", []

    def close():
        if len(block) >= 2 and set(block[1].replace("|", "").strip()) <= set("-: "):
            cells = [[_plain(c.strip()) for c in line.strip().strip("|").split("|")] for line in block]
            tables.append({"section": heading, "header": cells[0], "rows": cells[2:]})
        block.clear()

    for line in text.splitlines():
        m = _HEADING.match(line)
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        close()
        if m:
            heading = m.group(2)
    close()
    return tables


def _sections(text: str) -> list[tuple[str, str]]:
    out, heading, lines = [], "", []
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m:
            out.append((heading, "\n".join(lines)))
            heading, lines = m.group(2), []
        else:
            lines.append(line)
    out.append((heading, "\n".join(lines)))
    return out


def _paragraphs(body: str) -> list[str]:
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", body)]
    return [p for p in paras if p and not p.startswith(("|", "```"))]


def _plain(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*|\*(.+?)\*|`(.+?)`", lambda m: next(g for g in m.groups() if g), text)


def _sources(text: str, config: dict) -> list[str]:
    """Where the model came from: a "Sources"/"Data" section of the card, else its sentences that name sources
    (at most two); plus the base checkpoints the config names."""
    out = []
    for heading, body in _sections(text):
        if re.search(r"\b(sources?|data|training data)\b", heading, re.I):
            out += [_plain(p) for p in _paragraphs(body)[:3]]
    if not out:
        sentences = [s for p in _paragraphs(text) for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", p)]
        out = [_plain(s) for s in sentences if re.search(r"\bsources?\b(?!\.py)", s, re.I)][:2]
    for key in ("vision_config", "text_config"):
        base = (config.get(key) or {}).get("_name_or_path")
        if base:
            out.append(f"{key.split('_')[0]} base: {base}")
    return out


def describe(model_dir: str | Path) -> dict:
    """A model folder described for its users (no weights loaded).

    Args:
        model_dir: the folder (config.json, weights, optionally README.md).

    Returns {"name", "version", "fingerprint", "path", "size_bytes", "weight_files", "quality", "sources", "card"}.
    """
    from .model_id import fingerprint

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"{model_dir}: no model there (no config.json)")
    config = json.loads((model_dir / "config.json").read_text())
    readme = model_dir / "README.md"
    text = readme.read_text(encoding="utf-8", errors="replace") if readme.exists() else ""
    title = next((m.group(2) for m in map(_HEADING.match, text.splitlines()) if m and m.group(1) == "#"), "")
    name = re.sub(r"^model card\s*:\s*", "", title, flags=re.I) or model_dir.name
    weights = sorted(p for p in model_dir.iterdir() if p.suffix in _WEIGHTS)
    quality = [t for t in markdown_tables(text) if re.search(r"quality|evaluation|results|metrics", t["section"], re.I)]
    fp = fingerprint(model_dir)
    return {
        "name": name,
        "version": f"{fp} (ase-mllm {_package_version()}, transformers {config.get('transformers_version', '?')})",
        "fingerprint": fp,
        "path": str(model_dir.resolve()),
        "size_bytes": sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file()),
        "weight_files": len(weights),
        "quality": quality,
        "sources": _sources(text, config),
        "card": str(readme) if text else None,
    }


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def format_card(card: dict) -> str:
    """The card as text for people: name, version, size, sources, then the quality tables.

    Args:
        card: describe()'s answer.
    """
    lines = [f"{'name':15s} {card['name']}", f"{'version':15s} {card['version']}",
             f"{'size':15s} {_mb(card['size_bytes'])} in {card['path']} ({card['weight_files']} weight file(s))"]
    for i, s in enumerate(card["sources"] or ["(the folder has no model card saying where it came from)"]):
        wrapped = textwrap.wrap(s, 100) or [""]
        lines += [f"{'sources' if i == 0 and j == 0 else '':15s} {w}" for j, w in enumerate(wrapped)]
    if not card["quality"]:
        lines.append(f"{'quality':15s} (no quality table in the model card)")
    for t in card["quality"]:
        lines.append(f"quality ({t['section']}):")
        widths = [max(len(r[i]) if i < len(r) else 0 for r in [t["header"], *t["rows"]])
                  for i in range(len(t["header"]))]
        for row in [t["header"], *t["rows"]]:
            lines.append("  " + "  ".join(f"{c:{w}s}" for c, w in zip(row, widths)).rstrip())
    if card["card"]:
        lines.append(f"{'model card':15s} {card['card']}")
    return "\n".join(lines) + "\n"
