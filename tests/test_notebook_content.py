"""Content gates of the committed notebooks: glued numbers resolve, every figure has alt text.

These are the static halves of checks the book build and the site test make on the rendered pages; here they
run in milliseconds and name the notebook and key at fault.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GLUE_REF = re.compile(r"\{glue(?::(?:text|any|md|math|figure))?\}`([^`]+)`|```\{glue(?::\w+)?\}\s+(\S+)")


def _load(nb: Path) -> dict:
    return json.loads(nb.read_text())


def glued_keys(data: dict) -> set[str]:
    """Keys a notebook stores with ``myst_nb.glue`` (display_data outputs carrying scrapbook metadata)."""
    keys = set()
    for cell in data["cells"]:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                keys.add(name)
    return keys


def glue_references(text: str) -> list[tuple[str | None, str]]:
    """``(document or None, key)`` for every glue role or directive in MyST text; format specs removed."""
    refs = []
    for m in GLUE_REF.finditer(text):
        target = m.group(1) or m.group(2)
        doc, key = target.split("::", 1) if "::" in target else (None, target)
        refs.append((doc, key.split(":", 1)[0]))
    return refs


def test_glue_reference_parser():
    text = "a {glue:text}`k1:.3g` b {glue}`k2` c {glue:text}`../notebooks/x.ipynb::k3:.2f`\n```{glue:figure} k4\n```"
    assert glue_references(text) == [(None, "k1"), (None, "k2"), ("../notebooks/x.ipynb", "k3"), (None, "k4")]


def _markdown(data: dict) -> str:
    return "\n".join("".join(c["source"]) for c in data["cells"] if c["cell_type"] == "markdown")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_every_glue_reference_has_a_stored_value(nb):
    data = _load(nb)
    keys = glued_keys(data)
    for doc, key in glue_references(_markdown(data)):
        source = keys if doc is None else glued_keys(_load((nb.parent / doc).resolve()))
        assert key in source, f"{nb.name}: {{glue}} key {key!r} ({doc or 'this notebook'}) has no stored glue output"


def test_every_glue_reference_in_book_pages_resolves():
    for page in sorted((ROOT / "book").glob("*.md")):
        for doc, key in glue_references(page.read_text()):
            assert doc is not None, f"{page.name}: a prose page can only paste from a notebook (doc::key), got {key!r}"
            target = (page.parent / doc).resolve()
            assert target.exists(), f"{page.name}: glue source {doc} does not exist"
            assert key in glued_keys(_load(target)), f"{page.name}: {doc} stores no glue key {key!r}"


def _image_cells(data: dict):
    for i, cell in enumerate(data["cells"]):
        if cell["cell_type"] == "code" and any(
                mime.startswith("image/") for out in cell.get("outputs", []) for mime in out.get("data", {})):
            yield i, cell


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_has_alt_text(nb):
    for i, cell in _image_cells(_load(nb)):
        alt = cell["metadata"].get("mystnb", {}).get("image", {}).get("alt", "")
        assert len(alt.split()) >= 6, (f"{nb.name}, cell {i}: a figure needs alt text of a sentence or more in the "
                                       f"cell metadata mystnb.image.alt, got {alt!r}")
        assert not re.search(r"\.(png|svg|jpe?g)\b", alt), f"{nb.name}, cell {i}: alt text is a file name: {alt!r}"


def _figure(cell: dict) -> dict:
    return cell["metadata"].get("mystnb", {}).get("figure", {})


def _all_markdown() -> str:
    pages = [_markdown(_load(nb)) for nb in NOTEBOOKS] + [p.read_text() for p in sorted((ROOT / "book").glob("*.md"))]
    return "\n".join(pages)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_every_figure_is_numbered_captioned_and_referenced(nb):
    """A figure is a numbered, captioned figure (cell metadata mystnb.figure) that the prose cites with {numref}."""
    data = _load(nb)
    prose = _markdown(data)
    for i, cell in _image_cells(data):
        fig = _figure(cell)
        name, caption = fig.get("name", ""), fig.get("caption", "")
        assert re.fullmatch(r"fig-[a-z0-9-]+", name), f"{nb.name}, cell {i}: mystnb.figure.name must be fig-..., got {name!r}"
        assert len(caption.split()) >= 5, f"{nb.name}, cell {i}: figure {name} needs a caption (mystnb.figure.caption)"
        assert re.search(r"\{numref\}`([^`<]*<)?" + re.escape(name) + r">?`", prose), \
            f"{nb.name}: figure {name} is never cited with {{numref}} in the prose"


def _figure_names() -> list[str]:
    """mystnb.figure.name of every figure cell of the book, in order (repeats kept)."""
    names = (_figure(c).get("name") for nb in NOTEBOOKS for _, c in _image_cells(_load(nb)))
    return [n for n in names if n]


EQ_LABEL = re.compile(r"\$\$\s*\(([\w-]+)\)")


def test_figure_names_and_equation_labels_are_unique_across_the_book():
    names = _figure_names()
    labels = EQ_LABEL.findall(_all_markdown())
    for kind, items in (("figure name", names), ("equation label", labels)):
        dup = sorted({x for x in items if items.count(x) > 1})
        assert not dup, f"duplicate {kind}s: {dup}"


def test_every_equation_and_figure_reference_has_a_target():
    text = _all_markdown()
    labels = set(EQ_LABEL.findall(text))
    names = set(_figure_names())
    for ref in re.findall(r"\{eq\}`([^`]+)`", text):
        assert ref in labels, f"{{eq}} reference to an unknown equation label {ref!r}"
    for ref in re.findall(r"\{numref\}`([^`]+)`", text):
        target = ref.split("<")[-1].rstrip(">").strip()
        if target.startswith("fig-"):
            assert target in names, f"{{numref}} reference to an unknown figure {target!r}"
