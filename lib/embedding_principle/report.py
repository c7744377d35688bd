"""The reproduction report: every numeric claim of the papers against ours, generated from the cache.

Each figure module of :mod:`embedding_principle.experiments` contributes its claims through a
``@claims`` provider that reads the cached results. :func:`collect` gathers them all;
:func:`write_json` writes ``data/reproduction.json`` (fields ``id, claim, paper, ours, tolerance,
status``, plus the ``link`` to the book page that explains the row); :func:`markdown_table` renders
the book's report page. Nothing here is typed by hand: rerun ``make data`` and the report follows.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections import Counter
from pathlib import Path

from .cache import default_data_dir
from .experiments import Claim, claim_providers

__all__ = ["collect", "write_json", "read_json", "summary", "markdown_table", "REPORT_FILE"]

REPORT_FILE = "reproduction.json"


def collect() -> list[Claim]:
    """All claims of all figure modules, in a stable order (by id); duplicate ids are an error."""
    claims: list[Claim] = []
    for name, provider in claim_providers().items():
        got = provider()
        if not all(isinstance(c, Claim) for c in got):
            raise TypeError(f"claim provider {name} must return a list of Claim")
        claims += got
    ids = Counter(c.id for c in claims)
    dupes = sorted(i for i, n in ids.items() if n > 1)
    if dupes:
        raise ValueError(f"duplicate claim ids in the reproduction report: {dupes}")
    return sorted(claims, key=lambda c: c.id)


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_json(claims: list[Claim], path: Path | None = None) -> Path:
    """Write the claims as a JSON list to ``data/reproduction.json`` (or ``path``); returns the path."""
    path = Path(path) if path is not None else default_data_dir() / REPORT_FILE
    rows = [{k: _json_value(v) for k, v in c.as_dict().items()} for c in claims]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path | None = None) -> list[dict]:
    """The stored report (a list of dicts); ValueError naming the file if it is not a valid report."""
    path = Path(path) if path is not None else default_data_dir() / REPORT_FILE
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable reproduction report ({err}); regenerate it with "
                         f"`python -m embedding_principle report`") from err
    fields = set(Claim.__dataclass_fields__)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(r) == fields for r in rows):
        raise ValueError(f"{path} does not hold a list of claims with fields {sorted(fields)}")
    return rows


def summary(claims: list[Claim]) -> dict[str, int]:
    """Counts of claims by status (``pass``, ``deviation``) and in total."""
    counts = Counter(c.status for c in claims)
    return {"total": len(claims), "pass": counts.get("pass", 0), "deviation": counts.get("deviation", 0)}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(claims: list[Claim], page_dir: str = "notebooks") -> str:
    """A Markdown table: id, claim, paper, ours, tolerance, status, and a link to the explanation.

    Links point to the built HTML pages, relative to ``page_dir`` (the folder of the page that shows the
    table), e.g. ``11_fig1_two_stages.html#fig1-why`` from a page in ``notebooks/``.
    """
    lines = ["| id | claim | paper | ours | tolerance | status | where |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        doc, _, anchor = c.link.partition("#")
        target = posixpath.relpath(doc, page_dir) + ".html" + (f"#{anchor}" if anchor else "")
        status = "pass" if c.status == "pass" else "**deviation**"
        lines.append(f"| {_cell(c.id)} | {_cell(c.claim)} | {_cell(c.paper)} | {_cell(_fmt(c.ours))} | "
                     f"{_cell(c.tolerance)} | {status} | [{_cell(posixpath.basename(doc))}]({target}) |")
    return "\n".join(lines)
