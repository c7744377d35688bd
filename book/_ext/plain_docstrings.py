"""Sphinx extension: show the library's docstrings verbatim, as preformatted text.

The docstrings of ``embedding_principle`` are written for readers of the code, in plain text with
the papers' notation (W^[l], |lambda|, theta^[L-1], ...), not in reStructuredText, where ``|x|``
and ``*`` have meanings of their own. Rendering them as literal blocks shows exactly what a reader of
the source sees and keeps the gated (-W -n) build free of markup warnings. Signatures are still
rendered by autodoc.
"""


def _literal(app, what, name, obj, options, lines):
    if not any(line.strip() for line in lines):
        return
    body = ["    " + line if line.strip() else "" for line in lines]
    lines[:] = ["::", ""] + body + [""]


def setup(app):
    app.connect("autodoc-process-docstring", _literal)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
