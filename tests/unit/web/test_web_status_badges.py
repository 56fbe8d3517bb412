"""Statuses and power states render as badges people can scan, escaped."""

from __future__ import annotations

from xenkeep.web.templating import power_badge, status_badge


def test_a_status_is_a_badge_of_its_colour() -> None:
    assert str(status_badge("warning")) == '<span class="status status-warning">warning</span>'
    assert str(status_badge("")) == '<span class="status status-none">—</span>'
    assert str(power_badge("Running")) == (
        '<span class="status power-running" data-power="Running">Running</span>'
    )


def test_what_a_pool_names_cannot_break_out() -> None:
    html = str(status_badge('x"><script>'))
    assert "<script>" not in html and "&lt;script&gt;" in html and "&#34;" in html
