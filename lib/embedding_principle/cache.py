"""The project's one cached-experiment mechanism: an experiment is a function plus a configuration.

Register a function with :func:`experiment`; :func:`run` returns its results for a configuration
(a JSON-serialisable dict), computing them only when no valid stored copy exists::

    @experiment("fig1_narrow_critical_points", default_config={"widths": [1, 2], "steps": 20000})
    def fig1(config):            # config: the full, JSON-normalised configuration
        ...
        return {"width_1": {"theta": array, "loss": array}, "wall": 1.5}

    results = run("fig1_narrow_critical_points", {"steps": 2000})   # partial configs extend the default

Storage (``data/`` of the repository, or ``$EP_DATA_DIR``):

* ``<name>-<key12>.npz``: the results (``np.savez_compressed``; nested dicts flattened with '/'
  keys; no pickles). ``key`` = sha256 of the canonical JSON of (name, config, code hash), the code
  hash being the sha256 of the experiment function's source (and of any ``depends`` sources), without
  docstrings and comments (:func:`code_text`): editing documentation keeps results current.
* ``manifest.json``: per file the name, config, hashes, the file's sha256, versions, wall time
  (the experiment's own; ``input_wall_time_s``: other experiments it computed on demand) and creation time (UTC).

Rules: a valid stored result is loaded; a missing one is computed; one whose code changed is
recomputed and replaces the stale file; several configurations of one experiment coexist.
Writes are atomic (temporary file + ``os.replace``, manifest updates under a file lock). A
stored file that fails its checks (sha256 mismatch, unreadable npz, manifest entry without its
file, unreadable manifest, file without manifest entry) is never overwritten silently: loading it
raises :class:`CorruptCacheError`, which names the file, the problem and the command that
regenerates it (``run(..., force=True)`` keeps a copy of the damaged file as ``*.corrupt``).
"""

from __future__ import annotations

import ast
import contextlib
import datetime as _dt
import hashlib
import importlib
import inspect
import json
import logging
import marshal
import os
import platform
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

__all__ = ["Experiment", "CorruptCacheError", "VerifyReport", "experiment", "run", "verify", "status",
           "lookup", "experiments", "default_data_dir", "canonical_json", "regenerate_command"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_REGISTRY: dict[str, "Experiment"] = {}
_THREAD_LOCK = threading.RLock()
_TIMING = threading.local()   # .inputs: seconds spent computing other experiments on demand inside the current one


class CorruptCacheError(ValueError):
    """A stored result (or the manifest) failed an integrity check; it is left untouched."""


# ----------------------------------------------------------------------------- hashing
def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _source_of(obj: Any) -> bytes:
    """The code of a function or module as hashed: its source without docstrings, comments and blank lines
    (bytecode when no source is available).

    Editing documentation therefore keeps cached results current, while any change to code invalidates them.
    Docstrings are located with :mod:`ast` and cut out of the source text by position, so the hash is the same
    on every supported Python (an ``ast.dump`` or token stream would differ between 3.10 and 3.12).
    """
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is None:
            raise TypeError(f"cannot hash the code of {obj!r}: no source and no bytecode") from None
        return marshal.dumps(code)
    return code_text(source).encode()


def code_text(source: str) -> str:
    """``source`` without docstrings, full-line comments, trailing blanks and blank lines (the text that
    :attr:`Experiment.code_hash` hashes)."""
    source = textwrap.dedent(source)
    lines = source.splitlines()
    for lo, lo_col, hi, hi_col in sorted(_docstring_spans(ast.parse(source)), reverse=True):
        # ast columns count UTF-8 bytes
        head, tail = lines[lo - 1].encode()[:lo_col], lines[hi - 1].encode()[hi_col:]
        lines[lo - 1:hi] = [(head + tail).decode()]
    kept = (line.rstrip() for line in lines)
    return "\n".join(line for line in kept if line and not line.lstrip().startswith("#"))


def _docstring_spans(tree: ast.AST) -> list[tuple[int, int, int, int]]:
    """(line, column, end line, end column) of every module, class and function docstring in ``tree``."""
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                spans.append((first.lineno, first.col_offset, first.end_lineno, first.end_col_offset))
    return spans


def _normalise_config(config: Any) -> dict:
    """A JSON round trip of ``config`` (tuples become lists), refusing what JSON cannot hold."""
    if not isinstance(config, dict):
        raise TypeError(f"a configuration must be a dict, got {type(config).__name__}")
    try:
        return json.loads(canonical_json(config))
    except (TypeError, ValueError) as err:
        raise TypeError(f"the configuration must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from err


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Experiment:
    """A registered experiment: ``fn(config) -> dict of results``."""

    name: str
    fn: Callable[[dict], dict]
    default_config: dict
    description: str = ""
    depends: tuple = ()

    @property
    def code_hash(self) -> str:
        """sha256 of the source of ``fn`` and of everything in ``depends``."""
        return _sha256_bytes(b"\0".join(_source_of(obj) for obj in (self.fn, *self.depends)))

    def resolve(self, config: dict | None) -> dict:
        """The default configuration updated with ``config`` (unknown keys are refused)."""
        config = _normalise_config({} if config is None else config)
        if self.default_config:
            unknown = sorted(set(config) - set(self.default_config))
            if unknown:
                raise ValueError(f"experiment {self.name!r} has no configuration key(s) {unknown}; "
                                 f"known keys: {sorted(self.default_config)}")
        return _normalise_config({**self.default_config, **config})

    def key(self, config: dict) -> str:
        """sha256 of the canonical JSON of (name, config, code hash)."""
        return _sha256_bytes(canonical_json({"name": self.name, "config": config, "code": self.code_hash}).encode())

    def filename(self, config: dict) -> str:
        return f"{self.name}-{self.key(config)[:12]}.npz"


def experiment(name: str, default_config: dict | None = None, *, description: str = "",
               depends: Iterable[Any] = ()) -> Callable[[Callable[[dict], dict]], Callable[[dict], dict]]:
    """Register ``fn(config) -> results`` under ``name`` (a decorator; returns ``fn`` unchanged).

    Args:
        name: letters, digits and '_' only (it becomes part of file names).
        default_config: the configuration used when none is given; its keys are the only
            accepted ones (an empty default accepts any keys).
        description: one line for ``python -m embedding_principle list``.
        depends: helper functions or modules whose source also enters the code hash, so that
            editing them invalidates the stored results too.
    """
    if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"experiment names use letters, digits and '_' only, got {name!r}")
    default = _normalise_config(default_config or {})

    def register(fn: Callable[[dict], dict]) -> Callable[[dict], dict]:
        if not callable(fn):
            raise TypeError("@experiment decorates a function fn(config) -> dict")
        doc = description or (inspect.getdoc(fn) or "").split("\n")[0]
        with _THREAD_LOCK:
            _REGISTRY[name] = Experiment(name, fn, default, doc, tuple(depends))
        return fn

    return register


def _load_registry() -> None:
    """Import the library's experiments and those of the modules named in $EP_EXPERIMENT_MODULES."""
    importlib.import_module("embedding_principle.registry")
    for module in filter(None, (m.strip() for m in os.environ.get("EP_EXPERIMENT_MODULES", "").split(","))):
        importlib.import_module(module)


def experiments() -> dict[str, Experiment]:
    """Every registered experiment, by name."""
    _load_registry()
    return dict(sorted(_REGISTRY.items()))


def lookup(name: str) -> Experiment:
    """The registered experiment ``name`` (ValueError listing the known names otherwise)."""
    if name not in _REGISTRY:
        _load_registry()
    if name not in _REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


# ----------------------------------------------------------------------------- locations
def default_data_dir() -> Path:
    """``$EP_DATA_DIR`` if set, else ``<repo>/data`` (two levels above this package)."""
    env = os.environ.get("EP_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


def _data_dir(data_dir) -> Path:
    return Path(data_dir) if data_dir is not None else default_data_dir()


def regenerate_command(name: str, config: dict | None = None) -> str:
    """The shell command that recomputes one stored result."""
    cfg = "" if config is None else f" --config '{canonical_json(config)}'"
    return f"python -m embedding_principle run {name}{cfg} --force"


# ----------------------------------------------------------------------------- results <-> npz
def _flatten(results: dict, prefix: str = "") -> dict[str, np.ndarray]:
    if not isinstance(results, dict):
        raise TypeError(f"experiment results must be a dict, got {type(results).__name__}")
    if not results:
        raise ValueError(f"results dict {prefix or '(top level)'!r} is empty; empty dicts cannot be stored")
    flat: dict[str, np.ndarray] = {}
    for key, value in results.items():
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"result keys must be non-empty strings without '/', got {key!r}")
        path = prefix + key
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = _to_array(value, path)
    return flat


def _to_array(value: Any, path: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):        # a torch tensor
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biufcUS":
        raise TypeError(f"result {path!r} has dtype {arr.dtype}; store numbers, booleans or strings "
                        f"(numpy arrays, tensors, scalars), not Python objects")
    return arr


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for path, arr in flat.items():
        *parents, leaf = path.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = arr.item() if arr.ndim == 0 else arr
    return out


def _load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return _unflatten({k: npz[k] for k in npz.files})


# ----------------------------------------------------------------------------- manifest
@contextlib.contextmanager
def _locked(data_dir: Path):
    """Exclusive lock on the data directory (threads and processes): manifest updates, and reads that
    must not see a file replaced between its manifest check and its loading."""
    with _THREAD_LOCK:
        try:
            import fcntl
            fh = open(data_dir / ".manifest.lock", "a+")
        except (ImportError, OSError):                           # Windows, or a read-only directory
            yield
            return
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _read_manifest(data_dir: Path) -> dict[str, dict]:
    """The manifest's entries by file name ({} when there is no manifest yet)."""
    path = data_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptCacheError(f"{path} is not valid JSON ({err}); restore it (e.g. from git) or move it away "
                                f"and regenerate the results with `python -m embedding_principle regenerate`") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("entries"), dict):
        raise CorruptCacheError(f"{path} does not have the expected structure {{'entries': {{...}}}}; restore it "
                                f"(e.g. from git) or move it away and run `python -m embedding_principle regenerate`")
    return manifest["entries"]


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write through ``write(fh)`` to a temporary file in the same directory, then os.replace it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)                                     # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_manifest(data_dir: Path, entries: dict[str, dict]) -> None:
    text = json.dumps({"version": 1, "entries": dict(sorted(entries.items()))}, indent=2, sort_keys=True) + "\n"
    _atomic_write(data_dir / MANIFEST, lambda fh: fh.write(text), mode="w")


def _versions() -> dict[str, str]:
    import torch

    from . import __version__

    return {"embedding_principle": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__}


# ----------------------------------------------------------------------------- checks
def _check_entry(data_dir: Path, fname: str, entry: dict) -> str | None:
    """None if the stored file matches its manifest entry, else what is wrong."""
    path = data_dir / fname
    if not path.exists():
        return "the manifest lists it but the file is missing"
    digest = _sha256_file(path)
    if digest != entry.get("sha256"):
        return f"sha256 mismatch (manifest {entry.get('sha256')}, file {digest}): the file was modified or damaged"
    try:
        _load_npz(path)
    except Exception as err:                                     # any failure to read is "unreadable"
        return f"the file cannot be read as npz ({type(err).__name__}: {err})"
    return None


def _corrupt(data_dir: Path, fname: str, problem: str, name: str, config: dict) -> CorruptCacheError:
    where = "" if data_dir == default_data_dir() else f"EP_DATA_DIR={data_dir} "
    return CorruptCacheError(f"stored result {data_dir / fname} is corrupt: {problem}. It was left untouched; "
                             f"regenerate it with: {where}{regenerate_command(name, config)}")


# ----------------------------------------------------------------------------- run
def run(name: str, config: dict | None = None, *, force: bool = False, data_dir=None) -> dict:
    """The results of experiment ``name`` at ``config`` (the default config updated with ``config``).

    Loads the stored results when they are valid; computes and stores them when they are missing,
    when the experiment's code changed since they were made, or when ``force`` is true.

    Raises:
        CorruptCacheError: a stored file or the manifest fails its integrity checks (unless
            ``force``: the damaged file is then kept as ``<file>.corrupt`` and recomputed).
    """
    exp = lookup(name)
    config = exp.resolve(config)
    ddir = _data_dir(data_dir)
    fname = exp.filename(config)
    if not force:
        cached = _load_valid(exp, config, ddir, fname)
        if cached is not None:
            return cached
    return _compute(exp, config, ddir, fname)


def _load_valid(exp: Experiment, config: dict, ddir: Path, fname: str) -> dict | None:
    if not ddir.is_dir():
        return None
    with _locked(ddir):
        return _load_checked(exp, config, ddir, fname)


def _load_checked(exp: Experiment, config: dict, ddir: Path, fname: str) -> dict | None:
    entries = _read_manifest(ddir)
    entry = entries.get(fname)
    if entry is None:
        if (ddir / fname).exists():
            raise _corrupt(ddir, fname, "the file exists but has no manifest entry (its origin cannot be "
                                        "verified)", exp.name, config)
        return None
    problem = _check_entry(ddir, fname, entry)
    if problem is not None:
        raise _corrupt(ddir, fname, problem, exp.name, config)
    return _load_npz(ddir / fname)


def _compute(exp: Experiment, config: dict, ddir: Path, fname: str) -> dict:
    flat, wall, inputs = _timed(exp, config)
    ddir.mkdir(parents=True, exist_ok=True)
    with _locked(ddir):
        entries = _read_manifest(ddir)
        _keep_damaged(ddir, fname, entries.get(fname))
        _atomic_write(ddir / fname, lambda fh: np.savez_compressed(fh, **flat))
        entries[fname] = {
            "name": exp.name, "config": config,
            "config_hash": _sha256_bytes(canonical_json(config).encode()),
            "code_hash": exp.code_hash, "key": exp.key(config), "file": fname,
            "sha256": _sha256_file(ddir / fname), "versions": _versions(),
            "wall_time_s": round(wall, 3), "input_wall_time_s": round(inputs, 3),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        stale = [f for f, e in entries.items() if f != fname and e.get("name") == exp.name
                 and e.get("config_hash") == entries[fname]["config_hash"]]
        for f in stale:                                          # same config, older code: superseded
            del entries[f]
        _write_manifest(ddir, entries)
        for f in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ddir / f)
    return _load_npz(ddir / fname)


def _timed(exp: Experiment, config: dict) -> tuple[dict[str, np.ndarray], float, float]:
    """Run ``exp`` at ``config``: (flattened results, its own wall time, wall time of the inputs it computed).

    An experiment that computes another one on demand (e.g. a reduction whose training run is missing) must not
    count that time as its own, or the manifest's wall times would add up to more than the work done.
    """
    outer = getattr(_TIMING, "inputs", None)
    _TIMING.inputs = 0.0
    start = time.perf_counter()
    try:
        flat = _flatten(exp.fn(json.loads(canonical_json(config))))
    finally:
        total = time.perf_counter() - start
        inputs = _TIMING.inputs
        _TIMING.inputs = None if outer is None else outer + total
    return flat, total - inputs, inputs


def _keep_damaged(ddir: Path, fname: str, entry: dict | None) -> None:
    """Before a forced rewrite, keep a file that fails its checks as ``<file>.corrupt`` (never lose data)."""
    path = ddir / fname
    if path.exists() and (entry is None or _check_entry(ddir, fname, entry) is not None):
        os.replace(path, path.with_name(path.name + ".corrupt"))
        log.warning("kept the damaged %s as %s.corrupt", path, path.name)


# ----------------------------------------------------------------------------- inspection
@dataclass
class VerifyReport:
    """Outcome of :func:`verify`: one line per manifest entry plus files without entries."""

    data_dir: Path
    checked: list[tuple[str, str | None]] = field(default_factory=list)   # (file, problem or None)
    orphans: list[str] = field(default_factory=list)
    manifest_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.manifest_error is None and not self.orphans and all(p is None for _, p in self.checked)

    @property
    def problems(self) -> list[str]:
        out = [] if self.manifest_error is None else [self.manifest_error]
        out += [f"{f}: {p}" for f, p in self.checked if p is not None]
        return out + [f"{f}: npz file without manifest entry" for f in self.orphans]

    def __str__(self) -> str:
        lines = [f"data directory {self.data_dir}: {len(self.checked)} entries, "
                 f"{'all valid' if self.ok else str(len(self.problems)) + ' problem(s)'}"]
        lines += [f"  ok       {f}" for f, p in self.checked if p is None]
        lines += [f"  PROBLEM  {p}" for p in self.problems]
        return "\n".join(lines)


def verify(data_dir=None) -> VerifyReport:
    """Check every manifest entry (file exists, sha256 matches, npz loads) and look for orphan files."""
    ddir = _data_dir(data_dir)
    report = VerifyReport(ddir)
    try:
        entries = _read_manifest(ddir)
    except CorruptCacheError as err:
        report.manifest_error = str(err)
        return report
    report.checked = [(f, _check_entry(ddir, f, e)) for f, e in sorted(entries.items())]
    report.orphans = sorted(p.name for p in ddir.glob("*.npz") if p.name not in entries) if ddir.exists() else []
    return report


def status(name: str | None = None, data_dir=None) -> list[dict]:
    """The manifest entries (of experiment ``name``, or all), each with ``current`` (code unchanged) and ``exists``."""
    ddir = _data_dir(data_dir)
    entries = _read_manifest(ddir)
    _load_registry()
    if name is not None:
        lookup(name)
    out = []
    for fname, e in sorted(entries.items()):
        if name is not None and e.get("name") != name:
            continue
        exp = _REGISTRY.get(e.get("name", ""))
        out.append({**e, "exists": (ddir / fname).exists(),
                    "current": exp is not None and exp.code_hash == e.get("code_hash")
                    and exp.filename(e.get("config", {})) == fname})
    return out
