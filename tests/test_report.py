import pytest

from evalkit.results.report import full_report, render, summary_table, suite_table, task_table, wilson_interval
from evalkit.core.types import EpisodeResult


def result(suite, task, i, success, termination=None):
    return EpisodeResult(suite, task, f"task{task}", i, i, success, termination or ("success" if success else "budget"),
                         10, 1, 0.1, 0.01)


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775),  # hand-computed: z^2/(n+z^2) = 3.8415/13.8415
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (45, 50, 0.7864, 0.9565),
])
def test_wilson_interval_matches_hand_computed_values(k, n, low, high):
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-4)


def test_tables_count_errors_as_failures_and_show_them():
    results = [result("libero_spatial", 0, i, i < 3) for i in range(4)] + [
        result("libero_spatial", 1, 0, False, "error"), result("libero_goal", 0, 0, True)]
    headers, rows = task_table(results)
    assert [r[0] for r in rows] == ["libero_goal", "libero_spatial", "libero_spatial"]
    assert rows[1][:6] == ["libero_spatial", "0", "task0", "4", "3", "75.0"]
    assert rows[2][-1] == "1"  # one error
    _, suites = suite_table(results)
    assert suites == [["libero_goal", "1", "1", "100.0", "[20.7, 100.0]", "0"],
                      ["libero_spatial", "5", "3", "60.0", "[23.1, 88.2]", "1"]]


def test_summary_row_is_paper_style_and_flags_partial_average():
    families = {"libero_spatial": "Spatial", "libero_goal": "Goal"}
    results = [result("libero_spatial", 0, i, i < 3) for i in range(4)] + [result("libero_goal", 0, 0, True)]
    headers, rows = summary_table(results, families)
    assert headers == ["Spatial", "Object", "Goal", "Long", "Avg"]
    assert rows == [["75.0", "-", "100.0", "-", "87.5 (2 of 4)"]]


def test_formats():
    headers, rows = ["suite", "success %"], [["libero_10", "50.0"]]
    assert render(headers, rows, "csv") == "suite,success %\nlibero_10,50.0"
    latex = render(headers, rows, "latex")
    assert r"libero\_10 & 50.0 \\" in latex and latex.startswith(r"\begin{tabular}")
    assert render(headers, rows).splitlines()[2] == "| libero_10 | 50.0 |"
    with pytest.raises(ValueError, match="markdown, csv or latex"):
        render(headers, rows, "html")
    assert "## Summary" in full_report([result("libero_10", 0, 0, True)], {"libero_10": "Long"})
