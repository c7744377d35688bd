"""The published-build configuration (tools/book_config.py) and the slim Binder/Colab requirements."""
import importlib.util
from pathlib import Path

import pytest
import yaml
from jupyter_book.config import get_final_config

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("book_config", ROOT / "tools" / "book_config.py")
book_config = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_config)

CLI = {"latex_individualpages": False}    # what `jupyter-book build` passes
BASE = yaml.safe_load((ROOT / "_config.yml").read_text())


def test_the_committed_config_has_no_launch_buttons_without_a_repository():
    config, _ = get_final_config(user_yaml=BASE, cli_config=dict(CLI), sourcedir=ROOT, validate=True, raise_on_invalid=True)
    options = config["html_theme_options"]
    assert not options["use_repository_button"] and not options["use_issues_button"]
    assert not options["launch_buttons"].get("binderhub_url") and not options["launch_buttons"].get("colab_url")


def test_launch_config_adds_repository_binder_and_colab_and_keeps_the_rest():
    launch = book_config.launch_config(BASE, "https://github.com/someone/embedding-book.git/", "gh-pages")
    config, _ = get_final_config(user_yaml=launch, cli_config=dict(CLI), sourcedir=ROOT, validate=True, raise_on_invalid=True)
    options = config["html_theme_options"]
    assert options["repository_url"] == "https://github.com/someone/embedding-book"
    assert options["repository_branch"] == "gh-pages"
    assert options["use_repository_button"] and options["use_issues_button"]
    assert options["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert options["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    base_config, _ = get_final_config(user_yaml=BASE, cli_config=dict(CLI), sourcedir=ROOT)
    for key in ("mathjax_path", "mathjax3_config", "extensions", "html_static_path", "nitpick_ignore_regex"):
        assert config[key] == base_config[key], key
    assert BASE.get("repository") is None            # the input is not modified


@pytest.mark.parametrize("url", ["github.com/a/b", "https://gitlab.com/a/b", "https://github.com/a", "https://github.com/a/b c"])
def test_bad_repository_url_is_refused(url):
    with pytest.raises(ValueError, match="repository URL"):
        book_config.launch_config(BASE, url)


def test_bad_branch_is_refused():
    with pytest.raises(ValueError, match="branch"):
        book_config.launch_config(BASE, "https://github.com/a/b", "main; rm -rf /")


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split(";")[0].strip()
        if line and not line.startswith(("#", "-")):
            name, version = line.split("==")
            out[name.lower()] = version
    return out


def test_binder_requirements_are_slim_cpu_only_and_follow_the_lock():
    binder = _pins((ROOT / "binder" / "requirements.txt").read_text().splitlines())
    lock_lines = [l for l in (ROOT / "requirements-lock.txt").read_text().splitlines()
                  if "python_version" not in l or 'python_version == "3.11"' in l]
    lock = _pins(lock_lines)
    assert binder.pop("torch") == lock["torch"] + "+cpu"
    for name, version in binder.items():
        assert lock.get(name) == version, f"binder pins {name}=={version}, the lock (3.11) {lock.get(name)}"
    for heavy in ("jupyter-book", "nbval", "pytest", "hypothesis", "sphinx-proof"):
        assert heavy not in binder, f"{heavy} is not needed to run the notebooks"
    runtime = (ROOT / "binder" / "runtime.txt").read_text().strip()
    assert runtime == "python-3.11"
    needed = {"numpy", "scipy", "matplotlib", "seaborn", "scikit-learn", "tqdm", "myst-nb"}
    assert needed <= set(binder), needed - set(binder)


def test_a_published_build_renders_binder_colab_and_repository_links(tmp_path):
    """Build a one-page book with the launch configuration (no execution) and read the buttons off the HTML."""
    import json
    import subprocess
    import sys

    base = {"title": "t", "execute": {"execute_notebooks": "off"}, "only_build_toc_files": True}
    config = book_config.launch_config(base, "https://github.com/someone/embedding-book")
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: notebooks/page\n")
    (tmp_path / "notebooks").mkdir()
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# A page"]}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "notebooks" / "page.ipynb").write_text(json.dumps(nb))
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", "-W", "-n", "--keep-going", str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = (tmp_path / "_build" / "html" / "notebooks" / "page.html").read_text()
    assert "https://mybinder.org/v2/gh/someone/embedding-book/main?urlpath=tree/notebooks/page.ipynb" in html
    assert "https://colab.research.google.com/github/someone/embedding-book/blob/main/notebooks/page.ipynb" in html
    assert 'href="https://github.com/someone/embedding-book"' in html
