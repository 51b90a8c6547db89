"""The README's results summary quotes docs/RESULTS.md and nothing else: each table row is a row
of the report's EM tables, each number in its text is in the report. Typing a number by hand, or
regenerating the report without updating the summary, fails here."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"[+-]?\d+\.\d+|<0\.001")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end != -1 else None]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_readme_results_summary_comes_from_the_report():
    summary = _section((ROOT / "README.md").read_text(), "## Results so far")
    report = (ROOT / "docs" / "RESULTS.md").read_text()
    report_rows = [_cells(line) for line in report.splitlines() if line.startswith("| ")]

    rows = [_cells(line) for line in summary.splitlines() if line.startswith("| ")][1:]
    rows = [r for r in rows if not set("".join(r)) <= set("-")]
    assert rows, "no results table in the README's summary"
    for _, method, benchmark, round_, em, delta, p in rows:
        quoted = [c for c in (method, benchmark, round_, em, delta, p) if c]
        assert any(all(c in r for c in quoted) for r in report_rows), (
            f"README results row {quoted} is not a row of docs/RESULTS.md")

    prose = "\n".join(line for line in summary.splitlines() if not line.startswith("|"))
    for number in NUMBER.findall(prose):
        assert number in report, f"README results text quotes {number}, not in docs/RESULTS.md"
