"""The cached data still follow from the code, and the reproduction report follows from the cache.

Each figure module registers a CI-scale consistency check (a prefix or scaled rerun compared with
the cached full-scale results); every one of them must pass here. The committed
data/reproduction.json must equal the report regenerated from the cached results now.
"""
import json

import pytest

from embedding_principle import report
from embedding_principle.experiments import Check, Claim, consistency_checks

CHECKS = consistency_checks()


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_cached_results_follow_from_the_code(name):
    checks = CHECKS[name]()
    assert checks, f"{name} checked nothing"
    bad = [f"{c.label}: residual {c.residual:.3e} > tolerance {c.tolerance:.1e}" for c in checks if not c.ok]
    assert not bad, "; ".join(bad)


def test_reproduction_json_is_generated_not_typed(tmp_path):
    fresh = report.write_json(report.collect(), tmp_path / "reproduction.json")
    committed = report.read_json()
    assert json.loads(fresh.read_text()) == committed, \
        "data/reproduction.json differs from the report generated from the cache: run `make data` (or " \
        "`python -m embedding_principle report`) and commit the result"


def test_report_rows_have_the_required_fields_and_valid_status():
    for row in report.read_json():
        assert {"id", "claim", "paper", "ours", "tolerance", "status"} <= set(row)
        assert row["status"] in ("pass", "deviation")


def test_bad_report_file_and_bad_claims_are_refused(tmp_path):
    bad = tmp_path / "reproduction.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable reproduction report"):
        report.read_json(bad)
    bad.write_text(json.dumps([{"id": "x"}]))
    with pytest.raises(ValueError, match="fields"):
        report.read_json(bad)
    with pytest.raises(ValueError, match="status"):
        Claim("x", "c", "1", 1.0, "exact", "maybe", "notebooks/x")
    assert Check("x", 1e-12, 1e-10).ok and not Check("x", 1e-9, 1e-10).ok


def test_markdown_table_escapes_and_links():
    c = Claim("A-x", "a | b", "1", 0.123456, "|d| <= 1", "deviation", "notebooks/13_fig4_diagram#clusters")
    table = report.markdown_table([c])
    assert "a \\| b" in table and "**deviation**" in table and "(13_fig4_diagram.html#clusters)" in table
    assert report.summary([c]) == {"total": 1, "pass": 0, "deviation": 1}
    assert "(../notebooks/13_fig4_diagram.html#clusters)" in report.markdown_table([c], page_dir="book")
