"""Command line for the cached experiments: ``python -m embedding_principle COMMAND``.

    list                         registered experiments with their default configurations
    status [NAME]                stored results (all, or of one experiment): config, age, current or stale
    run NAME [--config JSON] [--force]
                                 load or compute one experiment (JSON updates the default config)
    verify                       check every stored file against the manifest (exit 1 on a problem)
    regenerate [NAME ...] [--all-configs]
                                 recompute experiments from scratch at their default configuration
                                 (with --all-configs: also every configuration in the manifest)
    report                       write data/reproduction.json from the cached results and print its summary
    check                        rerun every figure's CI-scale consistency check against the cache (exit 1 on failure)

``--data-dir DIR`` (or the environment variable EP_DATA_DIR) selects the data directory.
Exit codes: 0 success, 1 a corrupt cache, failed verification or failed experiment, 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import cache

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m embedding_principle",
                                description="Cached experiments of the Embedding Principle book.")
    p.add_argument("--data-dir", default=None, help="data directory (default: $EP_DATA_DIR or <repo>/data)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="list the registered experiments")
    st = sub.add_parser("status", help="show the stored results")
    st.add_argument("name", nargs="?", help="only this experiment")
    rn = sub.add_parser("run", help="load or compute one experiment")
    rn.add_argument("name")
    rn.add_argument("--config", default=None, help="JSON object updating the default configuration")
    rn.add_argument("--force", action="store_true", help="recompute even if a valid stored result exists")
    sub.add_parser("verify", help="check every stored result against the manifest")
    rg = sub.add_parser("regenerate", help="recompute experiments from scratch")
    rg.add_argument("names", nargs="*", help="experiments to recompute (default: all registered)")
    rg.add_argument("--all-configs", action="store_true",
                    help="also recompute every configuration recorded in the manifest")
    sub.add_parser("report", help="write data/reproduction.json from the cached results")
    sub.add_parser("check", help="rerun the CI-scale consistency checks against the cache")
    return p


def _summary(results: dict, indent: str = "  ") -> list[str]:
    lines = []
    for key, value in results.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key}/"] + _summary(value, indent + "  ")
        elif isinstance(value, np.ndarray):
            lines.append(f"{indent}{key}: array {value.dtype} {value.shape}")
        else:
            lines.append(f"{indent}{key}: {value!r}")
    return lines


def _cmd_list(args) -> int:
    for name, exp in cache.experiments().items():
        print(f"{name}: {exp.description}")
        print(f"  default config: {cache.canonical_json(exp.default_config)}")
    return EXIT_OK


def _cmd_status(args) -> int:
    if args.name is not None:
        _checked(args.name)
    entries = cache.status(args.name, data_dir=args.data_dir)
    if not entries:
        print("no stored results" + (f" for {args.name}" if args.name else ""))
    for e in entries:
        state = "current" if e["current"] else "STALE (code or registration changed)"
        state = state if e["exists"] else "MISSING FILE"
        print(f"{e['file']}: {state}; created {e.get('created')}; {e.get('wall_time_s')} s")
        print(f"  config: {cache.canonical_json(e.get('config', {}))}")
    return EXIT_OK


class _UsageError(Exception):
    """Bad command-line input (exit code 2)."""


def _checked(name: str, config: dict | None = None) -> None:
    """Refuse an unknown experiment or configuration before anything runs."""
    try:
        cache.lookup(name).resolve(config)
    except (ValueError, TypeError) as err:
        raise _UsageError(str(err)) from err


def _cmd_run(args) -> int:
    config = None
    if args.config is not None:
        try:
            config = json.loads(args.config)
        except json.JSONDecodeError as err:
            raise _UsageError(f"--config is not valid JSON: {err}") from err
    _checked(args.name, config)
    start = time.perf_counter()
    results = cache.run(args.name, config, force=args.force, data_dir=args.data_dir)
    print(f"{args.name}: done in {time.perf_counter() - start:.2f} s")
    print("\n".join(_summary(results)))
    return EXIT_OK


def _cmd_verify(args) -> int:
    report = cache.verify(args.data_dir)
    print(report)
    return EXIT_OK if report.ok else EXIT_FAIL


def _cmd_regenerate(args) -> int:
    names = args.names or list(cache.experiments())
    for name in names:
        _checked(name)
    jobs = [(name, None) for name in names]
    if args.all_configs:
        jobs += [(e["name"], e["config"]) for e in cache.status(data_dir=args.data_dir)
                 if e["name"] in names and e["config"] != cache.lookup(e["name"]).resolve(None)]
    total = time.perf_counter()
    began = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    for name, config in jobs:
        label = "default config" if config is None else cache.canonical_json(config)
        if _stored_since(name, config, began, args.data_dir):
            print(f"{name} ({label}): already recomputed in this run, as an input of an earlier one", flush=True)
            continue
        start = time.perf_counter()
        cache.run(name, config, force=True, data_dir=args.data_dir)
        print(f"{name} ({label}): {time.perf_counter() - start:.2f} s", flush=True)
    print(f"regenerated {len(jobs)} experiment(s) in {time.perf_counter() - total:.1f} s")
    return EXIT_OK


def _stored_since(name: str, config: dict | None, since: _dt.datetime, data_dir) -> bool:
    """Whether ``name`` at ``config`` was stored, by current code, at or after ``since`` (e.g. computed on demand
    by another experiment earlier in the same regeneration, which then need not be recomputed)."""
    resolved = cache.lookup(name).resolve(config)
    return any(e["current"] and e["exists"] and e.get("config") == resolved
               and _dt.datetime.fromisoformat(e["created"]) >= since for e in cache.status(name, data_dir=data_dir))


def _cmd_report(args) -> int:
    from . import report
    claims = report.collect()
    path = report.write_json(claims, None if args.data_dir is None else Path(args.data_dir) / report.REPORT_FILE)
    counts = report.summary(claims)
    print(f"{path}: {counts['total']} claims, {counts['pass']} pass, {counts['deviation']} deviation")
    return EXIT_OK


def _cmd_check(args) -> int:
    from .experiments import consistency_checks
    failed = 0
    for name, check in consistency_checks().items():
        for c in check():
            failed += not c.ok
            print(f"{'ok  ' if c.ok else 'FAIL'} {name}: {c.label}: residual {c.residual:.2e} (tolerance {c.tolerance:.1e})")
    return EXIT_FAIL if failed else EXIT_OK


_COMMANDS = {"list": _cmd_list, "status": _cmd_status, "run": _cmd_run, "verify": _cmd_verify,
             "regenerate": _cmd_regenerate, "report": _cmd_report, "check": _cmd_check}


def _threads() -> None:
    """One torch thread unless $EP_THREADS says otherwise: the experiments are small, single-threaded
    runs are as fast on 2 cores and do not spin idle threads, and results are identical across machines."""
    import torch
    torch.set_num_threads(int(os.environ.get("EP_THREADS", "1")))


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    _threads()
    try:
        return _COMMANDS[args.command](args)
    except _UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except cache.CorruptCacheError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
