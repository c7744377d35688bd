"""The set-up files agree with each other: requirements, lock, conda environment, pyproject, notebooks."""
import json
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.markers import default_environment

ROOT = Path(__file__).resolve().parents[1]


def _lock_pins() -> dict[str, str]:
    env = default_environment()
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            pins[req.name.lower().replace("_", "-")] = str(req.specifier).removeprefix("==")
    return pins


def _direct_requirements() -> list[Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [Requirement(l) for l in lines if l.strip() and not l.startswith("#")]


def test_lock_pins_every_direct_requirement_within_its_range():
    pins = _lock_pins()
    for req in _direct_requirements():
        name = req.name.lower()
        assert name in pins, f"{name} is in requirements.txt but not pinned in requirements-lock.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"lock pins {name}=={pins[name]}, outside {req.specifier}"


def test_lock_covers_every_supported_python():
    text = (ROOT / "requirements-lock.txt").read_text()
    for py in ("3.10", "3.11", "3.12"):
        assert f'python_version == "{py}"' in text, f"the lock has no resolution for Python {py}"


def test_pyproject_runtime_dependencies_are_in_the_lock():
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"dependencies = \[(.*?)\]", text, re.S).group(1)
    pins = _lock_pins()
    for dep in re.findall(r'"([^"]+)"', block):
        req = Requirement(dep)
        assert req.name.lower() in pins, f"pyproject needs {req.name}, which the lock does not pin"
        assert req.specifier.contains(pins[req.name.lower()], prereleases=True), f"{dep} vs lock {pins[req.name.lower()]}"


def test_conda_environment_installs_the_lock():
    env = (ROOT / "environment.yml").read_text()
    assert "-r requirements-lock.txt" in env and "-e ." in env
    py = re.search(r"python=(\d+\.\d+)", env).group(1)
    assert py in ("3.10", "3.11", "3.12")


def test_installed_torch_matches_the_exact_pin():
    import torch
    assert torch.__version__.split("+")[0] == _lock_pins()["torch"]


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_committed_executed_in_order_with_python3_kernel(nb):
    data = json.loads(nb.read_text())
    assert data["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in data["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{nb.name}: execution counts {counts} are not 1..{len(code)}"
    for c in code:
        for out in c.get("outputs", []):
            assert out["output_type"] != "error", f"{nb.name} has a stored error output"
            assert out.get("name") != "stderr", f"{nb.name} writes to stderr (nbval compares it)"


def test_every_library_module_is_on_the_reference_page():
    page = (ROOT / "book" / "api.md").read_text()
    package = ROOT / "lib" / "embedding_principle"
    modules = [p.stem for p in package.glob("*.py") if not p.stem.startswith("_")] + ["experiments"]
    missing = [m for m in modules if f"automodule:: embedding_principle.{m}\n" not in page]
    assert not missing, f"book/api.md does not document: {missing}"
