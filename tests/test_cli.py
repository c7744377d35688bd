"""``python -m embedding_principle`` through subprocesses, with EP_DATA_DIR in a temporary directory."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

MODULE = textwrap.dedent("""
    import numpy as np
    from embedding_principle.cache import experiment

    @experiment("t_cli", default_config={"n": 3})
    def t_cli(config):
        \"\"\"A tiny test experiment.\"\"\"
        return {"v": np.arange(config["n"]), "info": {"double": 2 * config["n"]}}
""")


@pytest.fixture
def cli(tmp_path):
    (tmp_path / "ep_cli_mod.py").write_text(MODULE)
    env = {**os.environ, "EP_DATA_DIR": str(tmp_path / "data"), "EP_EXPERIMENT_MODULES": "ep_cli_mod",
           "PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def call(*args):
        return subprocess.run([sys.executable, "-m", "embedding_principle", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    call.data = tmp_path / "data"
    return call


def test_list_shows_library_and_extra_experiments(cli):
    out = cli("list")
    assert out.returncode == 0, out.stderr
    assert "fig1_narrow_critical_points" in out.stdout and "t_cli: A tiny test experiment." in out.stdout
    assert '"widths":[1,2]' in out.stdout


def test_run_verify_status_and_corruption(cli):
    out = cli("run", "t_cli", "--config", '{"n": 4}')
    assert out.returncode == 0, out.stderr
    assert "v: array int64 (4,)" in out.stdout and "double: 8" in out.stdout
    (npz,) = cli.data.glob("t_cli-*.npz")
    manifest = json.loads((cli.data / "manifest.json").read_text())
    assert manifest["entries"][npz.name]["config"] == {"n": 4}
    mtime = npz.stat().st_mtime_ns
    assert cli("run", "t_cli", "--config", '{"n": 4}').returncode == 0
    assert npz.stat().st_mtime_ns == mtime                        # cached: not rewritten
    out = cli("verify")
    assert out.returncode == 0 and "all valid" in out.stdout
    out = cli("status", "t_cli")
    assert out.returncode == 0 and "current" in out.stdout and '{"n":4}' in out.stdout
    raw = bytearray(npz.read_bytes())
    raw[-30] ^= 0xFF
    npz.write_bytes(bytes(raw))
    out = cli("verify")
    assert out.returncode == 1 and "sha256" in out.stdout
    out = cli("run", "t_cli", "--config", '{"n": 4}')
    assert out.returncode == 1 and "corrupt" in out.stderr and "--force" in out.stderr
    assert npz.read_bytes() == bytes(raw)                         # refused, untouched
    out = cli("run", "t_cli", "--config", '{"n": 4}', "--force")
    assert out.returncode == 0, out.stderr
    assert cli("verify").returncode == 0


def test_regenerate(cli):
    assert cli("run", "t_cli", "--config", '{"n": 2}').returncode == 0
    out = cli("regenerate", "t_cli", "--all-configs")
    assert out.returncode == 0, out.stderr
    assert "t_cli (default config):" in out.stdout and 't_cli ({"n":2}):' in out.stdout
    assert len(list(cli.data.glob("t_cli-*.npz"))) == 2


DEPENDENT = textwrap.dedent("""
    import os
    from pathlib import Path
    import numpy as np
    from embedding_principle import cache
    from embedding_principle.cache import experiment

    @experiment("t_user", default_config={"k": 1})
    def t_user(config):
        \"\"\"Uses t_base, registered after it.\"\"\"
        return {"v": cache.run("t_base")["v"] + config["k"]}

    @experiment("t_base", default_config={"n": 3})
    def t_base(config):
        \"\"\"Counts its computations in $T_BASE_COUNT.\"\"\"
        counter = Path(os.environ["T_BASE_COUNT"])
        counter.write_text(str(int(counter.read_text() or 0) + 1) if counter.exists() else "1")
        return {"v": np.arange(config["n"])}
""")


def test_regenerate_computes_a_shared_input_once(tmp_path):
    """From an empty data/, t_user computes t_base on demand; regenerate must not compute t_base a second time."""
    (tmp_path / "ep_dep_mod.py").write_text(DEPENDENT)
    counter = tmp_path / "count"
    env = {**os.environ, "EP_DATA_DIR": str(tmp_path / "data"), "EP_EXPERIMENT_MODULES": "ep_dep_mod",
           "T_BASE_COUNT": str(counter), "PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-m", "embedding_principle", "regenerate", "t_user", "t_base"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert counter.read_text() == "1"
    assert "t_base (default config): already recomputed in this run" in out.stdout
    out = subprocess.run([sys.executable, "-m", "embedding_principle", "regenerate", "t_base"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and counter.read_text() == "2"    # a new regeneration recomputes it


def test_library_experiment_at_tiny_scale(cli):
    out = cli("run", "fig1_narrow_critical_points", "--config", '{"runs": 2, "steps": 50}')
    assert out.returncode == 0, out.stderr
    assert "width_1/" in out.stdout and "theta: array float64 (2, 3)" in out.stdout
    assert "theta: array float64 (2, 6)" in out.stdout


@pytest.mark.parametrize("args,msg", [
    (("run", "no_such"), "unknown experiment"), (("run", "t_cli", "--config", "{bad"), "not valid JSON"),
    (("run", "t_cli", "--config", '{"m": 1}'), "no configuration key"), (("status", "no_such"), "unknown experiment"),
    (("frobnicate",), "invalid choice"),
])
def test_usage_errors_exit_2(cli, args, msg):
    out = cli(*args)
    assert out.returncode == 2 and msg in out.stderr
    assert not cli.data.exists() or not list(cli.data.glob("*.npz"))


def test_broken_manifest_exit_1(cli):
    cli.data.mkdir()
    (cli.data / "manifest.json").write_text("{oops")
    out = cli("run", "t_cli")
    assert out.returncode == 1 and "not valid JSON" in out.stderr
    assert cli("verify").returncode == 1
