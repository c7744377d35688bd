"""The cached-experiment mechanism: hits, misses, staleness, corruption, atomicity, concurrency, verify."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from embedding_principle import cache
from embedding_principle.cache import CorruptCacheError

CALLS = {"n": 0}


@cache.experiment("t_square", default_config={"n": 3, "scale": 1.0})
def t_square(config):
    """Squares of 0..n-1, scaled."""
    CALLS["n"] += 1
    a = np.arange(config["n"], dtype=np.float64) ** 2 * config["scale"]
    return {"squares": a, "meta": {"n": config["n"], "total": float(a.sum()), "label": "sq"}}


@cache.experiment("t_nested")
def t_nested(config):
    return {"a": {"b": {"c": np.eye(2)}, "t": torch.arange(3)}, "flag": True, "i": np.int64(7),
            "x": 2.5, "s": "text", "ints": np.arange(4, dtype=np.int32), "empty": np.zeros((0, 3))}


@pytest.fixture
def ddir(tmp_path):
    CALLS["n"] = 0
    return tmp_path / "data"


def entries(ddir):
    return json.loads((ddir / "manifest.json").read_text())["entries"]


def only_file(ddir, name="t_square"):
    files = sorted(ddir.glob(f"{name}-*.npz"))
    assert len(files) == 1, files
    return files[0]


def test_miss_then_hit(ddir):
    first = cache.run("t_square", data_dir=ddir)
    assert CALLS["n"] == 1
    np.testing.assert_array_equal(first["squares"], [0.0, 1.0, 4.0])
    assert first["meta"] == {"n": 3, "total": 5.0, "label": "sq"}
    second = cache.run("t_square", data_dir=ddir)
    assert CALLS["n"] == 1
    np.testing.assert_array_equal(second["squares"], first["squares"])
    path = only_file(ddir)
    exp = cache.lookup("t_square")
    assert path.name == f"t_square-{exp.key({'n': 3, 'scale': 1.0})[:12]}.npz"
    (entry,) = entries(ddir).values()
    assert entry["name"] == "t_square" and entry["config"] == {"n": 3, "scale": 1.0}
    assert entry["file"] == path.name and entry["code_hash"] == exp.code_hash
    assert entry["sha256"] == cache._sha256_file(path)
    assert set(entry["versions"]) == {"embedding_principle", "python", "torch", "numpy"}
    assert entry["created"].endswith("+00:00") and entry["wall_time_s"] >= 0 and entry["input_wall_time_s"] == 0
    assert len(entry["config_hash"]) == 64 and len(entry["key"]) == 64
    cache.run("t_square", force=True, data_dir=ddir)
    assert CALLS["n"] == 2


def test_key_is_sha256_of_name_config_code():
    import hashlib
    exp = cache.lookup("t_square")
    cfg = {"n": 3, "scale": 1.0}
    text = json.dumps({"name": "t_square", "config": cfg, "code": exp.code_hash}, sort_keys=True, separators=(",", ":"))
    assert exp.key(cfg) == hashlib.sha256(text.encode()).hexdigest()


def test_configs_coexist_and_partial_configs_extend_default(ddir):
    cache.run("t_square", data_dir=ddir)
    small = cache.run("t_square", {"n": 2}, data_dir=ddir)
    assert CALLS["n"] == 2 and small["squares"].tolist() == [0.0, 1.0]
    assert len(list(ddir.glob("t_square-*.npz"))) == 2 and len(entries(ddir)) == 2
    cache.run("t_square", {"n": 3, "scale": 1.0}, data_dir=ddir)       # = the default: a hit
    cache.run("t_square", {"n": 2}, data_dir=ddir)
    assert CALLS["n"] == 2


def test_stale_code_recomputes_and_replaces(ddir):
    @cache.experiment("t_code", default_config={"k": 1})
    def v1(config):
        return {"v": np.array(1)}

    assert cache.run("t_code", data_dir=ddir)["v"] == 1
    old = only_file(ddir, "t_code")
    other = cache.run("t_code", {"k": 2}, data_dir=ddir)                # another config, stays
    assert other["v"] == 1

    @cache.experiment("t_code", default_config={"k": 1})
    def v2(config):
        return {"v": np.array(2)}

    assert [e["current"] for e in cache.status("t_code", data_dir=ddir)] == [False, False]
    assert cache.run("t_code", data_dir=ddir)["v"] == 2
    assert not old.exists()
    stored = [e for e in entries(ddir).values() if e["name"] == "t_code"]
    assert sorted(e["config"]["k"] for e in stored) == [1, 2]            # the old k=1 entry was replaced
    st = {e["config"]["k"]: e["current"] for e in cache.status("t_code", data_dir=ddir)}
    assert st == {1: True, 2: False}


def test_depends_enter_the_code_hash():
    def helper():
        return 1

    def other_helper():
        return 2

    cache.experiment("t_dep1", depends=(helper,))(t_square)
    cache.experiment("t_dep2", depends=(other_helper,))(t_square)
    assert cache.lookup("t_dep1").code_hash != cache.lookup("t_dep2").code_hash
    assert cache.lookup("t_dep1").code_hash != cache.lookup("t_square").code_hash


def _hash_of(source: str, tmp_path, module: str) -> str:
    """code_hash of experiment "t_h" defined by ``source`` (written to a module file, so inspect finds its source)."""
    import importlib.util
    path = tmp_path / f"{module}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(module, path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return cache.lookup("t_h").code_hash


BASE_SOURCE = '''
from embedding_principle import cache


@cache.experiment("t_h")
def fn(config):
    """Doc: theta <= 1, \u03b8."""
    # a comment
    return {{"v": 1}}
'''


@pytest.mark.parametrize("edit, changes", [
    (lambda s: s.replace("Doc: theta <= 1, \u03b8.", "Better doc, over\n    two lines \u03b8."), False),
    (lambda s: s.replace("# a comment", "# another comment\n\n"), False),
    (lambda s: s.replace('{{"v": 1}}', '{{"v": 2}}'), True),
    (lambda s: s.replace("    return", "    x = 0\n    return"), True),
])
def test_code_hash_ignores_docstrings_and_comments_only(tmp_path, edit, changes):
    assert edit(BASE_SOURCE) != BASE_SOURCE
    base = _hash_of(BASE_SOURCE.format(), tmp_path, "t_h_base")
    other = _hash_of(edit(BASE_SOURCE).format(), tmp_path, "t_h_edited")
    assert (other != base) == changes


def test_code_text_cuts_docstrings_by_position():
    src = ('def f(a):  # kept\n    """\u03b8 doc,\n    still \u03b8."""\n    # gone\n\n    class C:\n'
           '        """C."""\n        y = "\u03b8"\n    return a\n')
    assert cache.code_text(src) == 'def f(a):  # kept\n    class C:\n        y = "\u03b8"\n    return a'


def test_wall_time_of_inputs_computed_on_demand_is_not_counted_twice(ddir):
    import time

    @cache.experiment("t_inner")
    def inner(config):
        time.sleep(0.5)
        return {"v": np.array(1)}

    @cache.experiment("t_outer")
    def outer(config):
        time.sleep(0.05)
        return {"v": cache.run("t_inner", data_dir=ddir)["v"] + 1}

    assert cache.run("t_outer", data_dir=ddir)["v"] == 2
    e = {x["name"]: x for x in entries(ddir).values()}
    assert e["t_inner"]["wall_time_s"] >= 0.5 and e["t_inner"]["input_wall_time_s"] == 0
    assert e["t_outer"]["input_wall_time_s"] >= 0.5
    assert 0.05 <= e["t_outer"]["wall_time_s"] < 0.45          # its own time only
    cache.run("t_outer", force=True, data_dir=ddir)             # inner is cached now: nothing on demand
    e = {x["name"]: x for x in entries(ddir).values()}
    assert e["t_outer"]["input_wall_time_s"] < 0.05


def flip_byte(path, offset=-40):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


def test_corrupt_file_is_refused_and_left_untouched(ddir):
    cache.run("t_square", data_dir=ddir)
    path = only_file(ddir)
    damaged = flip_byte(path)
    manifest_before = (ddir / "manifest.json").read_text()
    with pytest.raises(CorruptCacheError) as err:
        cache.run("t_square", data_dir=ddir)
    msg = str(err.value)
    assert path.name in msg and "sha256" in msg
    assert "python -m embedding_principle run t_square" in msg and "--force" in msg and str(ddir) in msg
    assert isinstance(err.value, ValueError)
    assert path.read_bytes() == damaged and (ddir / "manifest.json").read_text() == manifest_before
    assert CALLS["n"] == 1
    report = cache.verify(ddir)
    assert not report.ok and "sha256" in report.problems[0]
    # an explicit --force recomputes and keeps the damaged copy
    cache.run("t_square", force=True, data_dir=ddir)
    assert Path(str(path) + ".corrupt").read_bytes() == damaged
    assert cache.verify(ddir).ok and cache.run("t_square", data_dir=ddir)["squares"][2] == 4.0


def test_unreadable_npz_with_matching_sha_is_refused(ddir):
    cache.run("t_square", data_dir=ddir)
    path = only_file(ddir)
    path.write_bytes(b"not an npz file at all")
    manifest = json.loads((ddir / "manifest.json").read_text())
    manifest["entries"][path.name]["sha256"] = cache._sha256_file(path)
    (ddir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptCacheError, match="cannot be read as npz"):
        cache.run("t_square", data_dir=ddir)
    assert path.read_bytes() == b"not an npz file at all"


def test_missing_file_is_refused(ddir):
    cache.run("t_square", data_dir=ddir)
    only_file(ddir).unlink()
    with pytest.raises(CorruptCacheError, match="file is missing"):
        cache.run("t_square", data_dir=ddir)
    assert "missing" in cache.verify(ddir).problems[0]


@pytest.mark.parametrize("text,msg", [("{not json", "not valid JSON"), ("[1, 2]", "expected structure"),
                                      ('{"entries": 3}', "expected structure")])
def test_broken_manifest_is_refused(ddir, text, msg):
    cache.run("t_square", data_dir=ddir)
    (ddir / "manifest.json").write_text(text)
    files_before = sorted(p.name for p in ddir.iterdir())
    with pytest.raises(CorruptCacheError, match=msg):
        cache.run("t_square", data_dir=ddir)
    with pytest.raises(CorruptCacheError, match=msg):
        cache.run("t_square", {"n": 5}, data_dir=ddir)           # not even a new config is written
    assert (ddir / "manifest.json").read_text() == text
    assert sorted(p.name for p in ddir.iterdir()) == files_before
    report = cache.verify(ddir)
    assert not report.ok and msg in report.manifest_error


def test_file_without_manifest_entry_is_refused(ddir):
    cache.run("t_square", data_dir=ddir)
    path = only_file(ddir)
    (ddir / "manifest.json").write_text(json.dumps({"version": 1, "entries": {}}))
    with pytest.raises(CorruptCacheError, match="no manifest entry"):
        cache.run("t_square", data_dir=ddir)
    assert path.exists()
    assert cache.verify(ddir).orphans == [path.name]


def test_nested_results_round_trip(ddir):
    first = cache.run("t_nested", data_dir=ddir)
    again = cache.run("t_nested", data_dir=ddir)
    for res in (first, again):
        np.testing.assert_array_equal(res["a"]["b"]["c"], np.eye(2))
        np.testing.assert_array_equal(res["a"]["t"], [0, 1, 2])
        assert res["flag"] is True and res["i"] == 7 and isinstance(res["i"], int)
        assert res["x"] == 2.5 and res["s"] == "text"
        assert res["ints"].dtype == np.int32 and res["empty"].shape == (0, 3)
    with np.load(only_file(ddir, "t_nested"), allow_pickle=False) as npz:
        assert "a/b/c" in npz.files and "a/t" in npz.files


@pytest.mark.parametrize("results,err,msg", [
    ([1, 2], TypeError, "must be a dict"), ({}, ValueError, "empty"), ({"a": {}}, ValueError, "empty"),
    ({"a/b": 1}, ValueError, "without '/'"), ({"o": np.array([object()])}, TypeError, "dtype object"),
    ({"n": None}, TypeError, "dtype object"),
])
def test_bad_results_are_refused_and_nothing_written(ddir, results, err, msg):
    cache.experiment("t_bad")(lambda config: results)
    with pytest.raises(err, match=msg):
        cache.run("t_bad", data_dir=ddir)
    assert not list(ddir.glob("*.npz")) if ddir.exists() else True


def test_failed_write_leaves_no_partial_file(ddir, monkeypatch):
    cache.run("t_square", data_dir=ddir)
    manifest_before = (ddir / "manifest.json").read_text()

    def broken_savez(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        cache.run("t_square", {"n": 4}, data_dir=ddir)
    assert sorted(p.name for p in ddir.iterdir() if not p.name.startswith(".manifest")) == \
        sorted([only_file(ddir).name, "manifest.json"])
    assert (ddir / "manifest.json").read_text() == manifest_before


def test_experiment_error_writes_nothing(ddir):
    def boom(config):
        raise RuntimeError("experiment failed")

    cache.experiment("t_boom")(boom)
    with pytest.raises(RuntimeError, match="experiment failed"):
        cache.run("t_boom", data_dir=ddir)
    assert not ddir.exists() or not list(ddir.glob("*.npz"))


def test_config_validation():
    with pytest.raises(ValueError, match="no configuration key"):
        cache.lookup("t_square").resolve({"nn": 3})
    with pytest.raises(TypeError, match="JSON"):
        cache.lookup("t_square").resolve({"n": {1, 2}})
    with pytest.raises(TypeError, match="JSON"):
        cache.lookup("t_square").resolve({"scale": float("nan")})
    with pytest.raises(TypeError, match="dict"):
        cache.lookup("t_square").resolve([("n", 3)])
    assert cache.lookup("t_nested").resolve({"w": (1, 2)}) == {"w": [1, 2]}     # tuples -> lists
    with pytest.raises(ValueError, match="unknown experiment"):
        cache.lookup("no_such_experiment")
    with pytest.raises(ValueError, match="letters, digits"):
        cache.experiment("bad name")


def test_verify_and_status(ddir):
    assert cache.verify(ddir).ok and cache.verify(ddir).checked == []
    cache.run("t_square", data_dir=ddir)
    cache.run("t_square", {"n": 1}, data_dir=ddir)
    report = cache.verify(ddir)
    assert report.ok and len(report.checked) == 2 and "all valid" in str(report)
    st = cache.status("t_square", data_dir=ddir)
    assert len(st) == 2 and all(e["current"] and e["exists"] for e in st)
    assert cache.status("t_nested", data_dir=ddir) == []
    (ddir / "stray.npz").write_bytes(b"x")
    report = cache.verify(ddir)
    assert not report.ok and report.orphans == ["stray.npz"] and "stray.npz" in str(report)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("EP_DATA_DIR", raising=False)
    repo = Path(cache.__file__).resolve().parents[2]
    assert cache.default_data_dir() == repo / "data"
    monkeypatch.setenv("EP_DATA_DIR", str(tmp_path))
    assert cache.default_data_dir() == tmp_path
    cache.run("t_square", {"n": 2})
    assert len(list(tmp_path.glob("t_square-*.npz"))) == 1


def test_registry_lists_library_experiments():
    assert "fig1_narrow_critical_points" in cache.experiments()


def test_thread_safe_concurrent_runs(ddir):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: cache.run("t_square", {"n": n % 4 + 1}, data_dir=ddir), range(16)))
    assert [len(r["squares"]) for r in results] == [n % 4 + 1 for n in range(16)]
    report = cache.verify(ddir)
    assert report.ok and len(report.checked) == 4


def test_process_safe_concurrent_writes(tmp_path):
    """Several processes writing (different and equal configs) into one data directory at once."""
    (tmp_path / "ep_conc_mod.py").write_text(textwrap.dedent("""
        import numpy as np
        from embedding_principle.cache import experiment

        @experiment("t_conc", default_config={"n": 1})
        def t_conc(config):
            return {"v": np.full(2000, config["n"], dtype=np.float64)}
    """))
    ddir = tmp_path / "data"
    env = {**os.environ, "EP_DATA_DIR": str(ddir), "EP_EXPERIMENT_MODULES": "ep_conc_mod",
           "PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = ("import sys; from embedding_principle import cache; "
            "[cache.run('t_conc', {'n': int(n)}, force=True) for n in sys.argv[1:]]")
    procs = [subprocess.Popen([sys.executable, "-c", code, *map(str, range(k, k + 30))], env=env)
             for k in range(0, 16, 4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    report = cache.verify(ddir)
    assert report.ok, str(report)
    assert len(report.checked) == 42                                   # n = 0..41, each exactly once
    assert not list(ddir.glob("*.tmp"))
