"""Progress outside a terminal: log lines that show a long stage advancing."""

import logging

from pst_core import progress as progress_module
from pst_core.progress import progress


def test_logs_progress_when_stderr_is_not_a_terminal(monkeypatch, caplog):
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="pst_core.progress"):
        with progress("qwen: generate", 64) as advance:
            advance(32)
            advance(32)
    assert [r.getMessage().split(" after ")[0] for r in caplog.records] == [
        "qwen: generate: 32/64", "qwen: generate: 64/64"]


def test_rate_limited_to_one_line_per_interval(monkeypatch, caplog):
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: False, raising=False)
    with caplog.at_level(logging.INFO, logger="pst_core.progress"):
        with progress("qwen: generate", 64) as advance:
            advance(32)  # well within LOG_EVERY_S of the start
    assert caplog.records == []
