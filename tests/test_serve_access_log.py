"""``serve``'s access log: on only at levels that write its INFO lines (the lines themselves, with tokens
redacted, are checked end to end in test_integration.py)."""

from __future__ import annotations

from gateway.__main__ import access_log_written


def test_the_access_log_is_on_only_where_its_info_lines_would_be_written() -> None:
    assert [access_log_written(level) for level in ("debug", "info", "warning", "error", "critical")] == [
        True, True, False, False, False]
