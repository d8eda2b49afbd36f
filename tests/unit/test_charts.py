"""The dashboard's SVG charts and its time format: pure functions of their data."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from services.web.dashboard import charts
from services.web.dashboard.render import _when

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def test_status_bars_draw_a_row_per_status_with_runs_scaled_to_the_most() -> None:
    svg = charts.status_bars({"completed": 50, "failed": 5, "skipped": 0}, "runs <today>")
    assert svg.count("<rect") == 2 and "skipped" not in svg
    widths = [float(w) for w in re.findall(r'<rect x="28%" y="\d+" width="([\d.]+)%"', svg)]
    assert widths == [58.0, 5.8]
    assert 'width="100%" height="48"' in svg  # as wide as its card, text never scaled
    assert 'aria-label="runs &lt;today&gt;"' in svg
    assert "no runs" in charts.status_bars({"failed": 0}, "x")


def test_timeline_counts_the_fires_of_each_half_hour_and_names_them() -> None:
    fires = [
        ("a<b", NOW + timedelta(minutes=5)),
        ("second", NOW + timedelta(minutes=29)),
        ("later", NOW + timedelta(hours=6, minutes=40)),
        ("past", NOW - timedelta(hours=1)),
        ("tomorrow", NOW + timedelta(hours=25)),
    ]
    svg = charts.timeline(fires, NOW)
    titles = re.findall(r"<title>(.*?)</title>", svg)
    assert titles == ["2 from 12:00 UTC: a&lt;b, second", "1 from 18:30 UTC: later"]
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" class="fire"', svg)]
    assert heights == [40.0, 20.0]  # the fullest half hour is the full height
    assert re.search(r'text-anchor="start">\+0h<', svg) and re.search(r'"end">\+24h<', svg)


def test_durations_cut_off_an_outlier_instead_of_flattening_every_other_run() -> None:
    quick = [(NOW + timedelta(minutes=i), "completed", 1.0 + i / 10) for i in range(9)]
    svg = charts.durations([*quick, (NOW, "timed_out", 60.0)])
    assert "3.6 s (longest 60.0 s)" in svg  # the full height: twice the 90th percentile
    assert svg.count('class="notch"') == 1
    assert "timed_out, 60.0 s" in svg and "durations of the last 10 runs (longest 60.0 s)" in svg

    even = charts.durations([(NOW, "completed", 2.0), (NOW, "failed", 0.5)])
    assert "notch" not in even and ">2.0 s<" in even
    assert "no runs yet" in charts.durations([])


def test_calendar_numbers_the_days_under_weekdays_and_shows_the_worst_of_each() -> None:
    today = date(2025, 3, 10)  # a Monday
    outcomes = [
        (date(2025, 3, 9), "completed", 3),
        (date(2025, 3, 9), "failed", 1),
        (date(2025, 3, 10), "completed", 2),
    ]
    svg = charts.calendar(outcomes, today, days=7)
    assert re.findall(r">([MTWFS])</text>", svg) == list("MTWTFSS")
    days = re.findall(r'class="day(?: on)?">(\d+)</text>', svg)
    assert days == ["3", "4", "5", "6", "7", "8", "9", "10"]  # from the Monday a week back
    assert "2025-03-09: completed 3, failed 1</title><rect" in svg
    sunday = re.search(r"2025-03-09.*?fill=\"(#[0-9a-f]+)\"", svg)
    assert sunday is not None and sunday.group(1) == charts.COLOURS["failed"]
    legend = re.findall(r'class="axis">(\w+)</text>', svg)
    assert legend == ["failed", "completed"]  # only what the days show, worst first
    assert 'width="206"' in svg  # a phone's card holds it


def test_when_is_a_time_element_whose_date_and_clock_do_not_break() -> None:
    moment = datetime(2025, 3, 30, 0, 30, tzinfo=UTC)
    assert str(_when(moment)) == (
        '<time datetime="2025-03-30T00:30:00+00:00">'
        "<span>2025-03-30</span> <span>00:30:00 UTC</span></time>"
    )
    assert "<span>01:30:00 CET</span>" in _when(moment, "Europe/Berlin")
    assert "00:30:00 UTC" in _when(moment, "Mars/Olympus")
    assert "<span>2025-03-30</span>" in _when("2025-03-30T00:30:00+00:00")
    assert _when("soon") == "soon" and _when(None) == "-"
