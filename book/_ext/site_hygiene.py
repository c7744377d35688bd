"""Sphinx extension: keep every built page free of duplicate and unused scripts.

Jupyter Book 1.x registers sphinx-thebe and sphinx-togglebutton twice, so their inline
``const``/``var`` snippets appear twice in every page and the second ``const THEBE_JS_URL``
raises "Identifier has already been declared" in the browser console. This book does not use
live code cells (Thebe), so its scripts -- which would point at a CDN -- are dropped, and any
remaining script that appears twice is kept once.
"""

_UNUSED = ("sphinx-thebe", "THEBE_JS_URL")


def _key(script) -> tuple:
    """Identity of a script: its file name and its attributes (an inline script's body is one)."""
    return (getattr(script, "filename", str(script)), repr(sorted(getattr(script, "attributes", {}).items())))


def _clean(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        text = str(script) + str(getattr(script, "attributes", {}).get("body", ""))
        if any(u in text for u in _UNUSED) or _key(script) in seen:
            continue
        seen.add(_key(script))
        kept.append(script)
    scripts[:] = kept


def setup(app):
    app.connect("html-page-context", _clean, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
