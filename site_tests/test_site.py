"""Browser test of the built book (run after `jupyter-book build`; `make site`).

Every page of the table of contents is opened in headless Chromium (Debian's package), offline:
it must load without console errors, its mathematics must be typeset by the vendored MathJax (no
raw TeX left), every image must exist, be a non-empty PNG/JPEG/SVG and carry descriptive alt text, internal links must resolve
(files and anchors), and no page may request anything outside the site. Screenshots of the landing
page and one chapter are written to ``_build/screenshots/`` as CI artefacts.

The site folder is ``$EP_SITE`` or ``_build/html``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("EP_SITE", ROOT / "_build" / "html"))
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--hide-scrollbars"]
# Chromium's own service hosts, contacted by the browser itself whatever the page is.
BROWSER_HOSTS = re.compile(r"(^|\.)(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)$")
CONSOLE_ERROR = re.compile(r"Uncaught|Error|Failed to load|ERR_|\b404\b|Refused|not defined", re.I)


def toc_pages() -> list[str]:
    """Docnames of every page in _toc.yml, root first."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        pages += [c["file"] for c in part["chapters"]]
    return pages


PAGES = toc_pages()


def html_of(doc: str) -> Path:
    return SITE / f"{doc}.html"


@pytest.fixture(scope="session", autouse=True)
def _site_exists():
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built site at {SITE}: run `make book` (or jupyter-book build) first")
    if CHROMIUM is None:
        pytest.fail("headless Chromium is needed: apt-get install chromium")


@lru_cache(maxsize=None)
def browse(doc: str) -> tuple[str, list[str], list[str]]:
    """Open one page in headless Chromium: (rendered DOM, console lines, requested URLs)."""
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / "net.json"
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp}/profile", "--enable-logging=stderr", "--v=0",
               f"--log-net-log={netlog}", "--virtual-time-budget=15000", "--dump-dom", html_of(doc).as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
        urls = _requested_urls(netlog)
    return proc.stdout, console, urls


def _requested_urls(netlog: Path) -> list[str]:
    try:
        events = json.loads(netlog.read_text()).get("events", [])
    except (OSError, json.JSONDecodeError):  # Chromium may leave the log unterminated
        text = netlog.read_text() if netlog.exists() else ""
        return sorted(set(re.findall(r'"url":"([^"]+)"', text)))
    return sorted({e["params"]["url"] for e in events if "url" in e.get("params", {})})


class _Refs(HTMLParser):
    """Collects ids, links, image sources and resources that a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.ids, self.links, self.images, self.loads = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img" and a.get("src") is not None:
            self.images.append((a.get("src"), a.get("alt")))
        if tag in ("script", "img", "iframe", "source", "audio", "video") and a.get("src"):
            self.loads.append(a["src"])
        if tag == "link" and a.get("href") and any(r in (a.get("rel") or "") for r in ("stylesheet", "preload", "icon")):
            self.loads.append(a["href"])


@lru_cache(maxsize=None)
def refs(path: Path) -> _Refs:
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _external(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https") or url.startswith("//")


# ----------------------------------------------------------------------------- per page
@pytest.mark.parametrize("doc", PAGES)
def test_page_loads_without_console_errors(doc):
    dom, console, _ = browse(doc)
    assert "<main" in dom and len(dom) > 2000, f"{doc}: the page did not render"
    # Match the message, not Chromium's log prefix (its timestamp once contained "404").
    errors = [line for line in console if CONSOLE_ERROR.search(line.split("] ", 1)[-1])]
    assert not errors, f"{doc}: console errors:\n" + "\n".join(errors)


@pytest.mark.parametrize("doc", PAGES)
def test_math_is_typeset_offline(doc):
    source = html_of(doc).read_text(encoding="utf-8")
    dom, _, _ = browse(doc)
    n_math = len(re.findall(r'class="math[ "]', source))
    if n_math == 0:
        pytest.skip(f"{doc} has no mathematics")
    assert "<mjx-container" in dom, f"{doc}: {n_math} formulas but MathJax typeset none (raw TeX shown)"
    raw = re.findall(r'<span class="math[^"]*">\s*\\\(', dom) + re.findall(r'<div class="math[^"]*">\s*\\\[', dom)
    assert not raw, f"{doc}: {len(raw)} formulas left as raw TeX"


@pytest.mark.parametrize("doc", PAGES)
def test_every_image_exists_and_is_a_nonempty_picture(doc):
    page = html_of(doc)
    for src, _alt in refs(page).images:
        assert not _external(src), f"{doc}: image loaded from outside the site: {src}"
        target = (page.parent / unquote(urlsplit(src).path)).resolve()
        assert target.is_file(), f"{doc}: missing image {src}"
        width, height = _picture_size(target)
        assert width > 0 and height > 0, f"{doc}: image {src} is empty ({width}x{height})"


@pytest.mark.parametrize("doc", PAGES)
def test_every_image_has_alt_text(doc):
    """Readers who cannot see a figure get a sentence about it (cell metadata mystnb.image.alt), never a file name."""
    for src, alt in refs(html_of(doc)).images:
        alt = (alt or "").strip()
        if "_static/" in src:              # the theme's own icons (e.g. the Binder and Colab logos): a short name
            assert alt, f"{doc}: theme image {src} has no alt text"
            continue
        assert len(alt.split()) >= 6, f"{doc}: image {src} has no descriptive alt text ({alt!r})"
        assert not re.search(r"\.(png|svg|jpe?g)\b", alt) and "/" not in alt.split()[0], \
            f"{doc}: the alt text of {src} is a file name: {alt!r}"


@pytest.mark.parametrize("doc", PAGES)
def test_every_figure_is_numbered_and_captioned(doc):
    """Each notebook figure renders as "Figure N" with a caption, and the book's stylesheet gives it one width."""
    source = html_of(doc).read_text(encoding="utf-8")
    images = [src for src, _ in refs(html_of(doc)).images if "_images/" in src]
    numbered = re.findall(r'<span class="caption-number">Figure \d+ </span>', source)
    assert len(numbered) == len(images), f"{doc}: {len(images)} figure images but {len(numbered)} numbered captions"
    assert 'href="../_static/book.css' in source or 'href="_static/book.css' in source, f"{doc}: book.css not linked"


def test_book_stylesheet_sets_one_figure_width():
    css = (SITE / "_static" / "book.css").read_text()
    assert re.search(r"main figure img,\s*main \.cell_output img\s*\{[^}]*width: 100%;[^}]*max-width: 700px", css)


def _picture_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"\xff\xd8":
        return (1, 1) if len(data) > 100 else (0, 0)
    if b"<svg" in data[:1000]:
        return (1, 1) if len(data) > 100 else (0, 0)
    raise AssertionError(f"{path.name} is not a PNG, JPEG or SVG picture")


@pytest.mark.parametrize("doc", PAGES)
def test_internal_links_resolve(doc):
    page = html_of(doc)
    bad = []
    for href in refs(page).links:
        parts = urlsplit(href)
        if parts.scheme or href.startswith(("//", "mailto:")):
            continue
        target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
        if not target.exists():
            bad.append(f"{href} (no file)")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in refs(target).ids:
            bad.append(f"{href} (no anchor)")
    assert not bad, f"{doc}: broken links: {bad}"


@pytest.mark.parametrize("doc", PAGES)
def test_no_request_leaves_the_site(doc):
    page = html_of(doc)
    static = [u for u in refs(page).loads if _external(u)]
    assert not static, f"{doc}: the page loads resources from outside the site: {static}"
    _, _, urls = browse(doc)
    outside = [u for u in urls if _external(u) and not BROWSER_HOSTS.search(urlsplit(u).hostname or "")]
    assert not outside, f"{doc}: requests outside the site: {outside}"


# ----------------------------------------------------------------------------- site-wide
def test_stylesheets_and_scripts_fetch_nothing_external():
    bad = []
    for path in (SITE / "_static").rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", path.read_text(encoding="utf-8", errors="ignore")):
            if _external(url):
                bad.append(f"{path.relative_to(SITE)}: {url}")
        bad += [f"{path.relative_to(SITE)}: @import {u}" for u in
                re.findall(r"@import\s+(?:url\()?['\"]?(https?://[^'\")]+)", path.read_text(errors="ignore"))]
    assert not bad, "stylesheets that fetch from outside the site:\n" + "\n".join(bad)


def test_no_local_paths_or_secrets_in_the_output():
    leaks = []
    pattern = re.compile(r"/work/main|/root/|/home/[a-z]|/tmp/[A-Za-z0-9_]+/|(api[_-]?key|secret|token)\s*[:=]\s*['\"][^'\"]{8,}",
                         re.I)
    for path in SITE.rglob("*.html"):
        for match in pattern.finditer(path.read_text(encoding="utf-8", errors="ignore")):
            leaks.append(f"{path.relative_to(SITE)}: {match.group(0)}")
    assert not leaks, "absolute local paths or secrets in the built site:\n" + "\n".join(leaks[:20])


@pytest.mark.parametrize("name, doc", [("landing", PAGES[0]), ("chapter", "notebooks/00_quickstart")])
def test_screenshot(name, doc):
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{name}.png"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp}/profile", "--window-size=1280,1600",
                        "--virtual-time-budget=15000", f"--screenshot={shot}", html_of(doc).as_uri()],
                       capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot of {doc}"
