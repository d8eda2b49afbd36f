"""The dashboard's charts as inline SVG, drawn on the server: no script, no external library.

Each function takes plain data and returns markup (every text in it escaped). The wide charts
place things in percentages of their width and keep a fixed height, so that one drawing fills a
laptop's card and a phone's alike while its text stays 12px (a viewBox would scale the text with
the width: huge on a laptop, unreadable on a phone). The calendar keeps its own size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from markupsafe import Markup, escape

# One colour per status, the same in every chart and in the page's status badges (app.css).
COLOURS = {
    "completed": "#2e8b57",
    "failed": "#c0392b",
    "timed_out": "#d35400",
    "abandoned": "#8e44ad",
    "cancelled": "#7f8c8d",
    "skipped": "#c9a227",
    "running": "#2f6fb3",
    "queued": "#16a085",
    "invalid": "#c0392b",
}
# Which outcome a day of the calendar shows when it had several: the worst.
SEVERITY = ("failed", "timed_out", "abandoned", "cancelled", "skipped", "running", "completed")
WEEKDAYS = "MTWTFSS"
EMPTY_DAY = "#eef1f5"


def _colour(status: str) -> str:
    return COLOURS.get(status, "#95a5a6")


def _fluid(height: int, body: str, label: str) -> Markup:
    """An SVG as wide as its container and `height` pixels tall (coordinates: % and px)."""
    return Markup(
        f'<svg class="chart" width="100%" height="{height}" role="img" '
        f'aria-label="{escape(label)}">{body}</svg>'
    )


def _took(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def status_bars(counts: Mapping[str, int], label: str) -> Markup:
    """One horizontal bar per status, longest = the most runs, the count at its end."""
    items = [(s, n) for s, n in counts.items() if n]
    if not items:
        return Markup('<p class="muted">no runs</p>')
    most = max(n for _, n in items)
    rows = []
    for i, (status, n) in enumerate(items):
        y = i * 24
        width = max(0.5, 58 * n / most)  # % of the chart; the labels take the first 28%
        rows.append(
            f'<text x="0" y="{y + 16}" class="axis">{escape(status)}</text>'
            f'<rect x="28%" y="{y + 5}" width="{width:.1f}%" height="14" rx="2" '
            f'fill="{_colour(status)}"><title>{escape(status)}: {n}</title></rect>'
            f'<text x="{29 + width:.1f}%" y="{y + 16}" class="value">{n}</text>'
        )
    return _fluid(len(items) * 24, "".join(rows), label)


def timeline(fires: Sequence[tuple[str, datetime]], now: datetime, hours: int = 24) -> Markup:
    """How many fires fall in each half hour from now to `hours` ahead, as bars; each bar is
    titled with its time and the names of what fires then."""
    slot = timedelta(minutes=30)
    slots = int(timedelta(hours=hours) / slot)
    names: list[list[str]] = [[] for _ in range(slots)]
    for name, moment in fires:
        index = int((moment - now) / slot)
        if 0 <= index < slots:
            names[index].append(name)
    most = max((len(n) for n in names), default=0) or 1
    top, base = 4, 44  # bars grow up from the axis at y=44
    body = [f'<line x1="0" y1="{base}" x2="100%" y2="{base}" class="axis-line"/>']
    for h in range(0, hours + 1, 6):
        x = 100 * h / hours
        anchor = "start" if h == 0 else "end" if h == hours else "middle"
        body.append(
            f'<line x1="{x:.2f}%" y1="{base}" x2="{x:.2f}%" y2="{base + 5}" class="tick"/>'
            f'<text x="{x:.2f}%" y="{base + 18}" class="axis" text-anchor="{anchor}">+{h}h</text>'
        )
    for index, due in enumerate(names):
        if not due:
            continue
        height = max(4.0, (base - top) * len(due) / most)
        start = (now + index * slot).strftime("%H:%M")
        shown = ", ".join(due[:8]) + (f" and {len(due) - 8} more" if len(due) > 8 else "")
        body.append(
            f'<rect x="{100 * index / slots + 0.15:.2f}%" y="{base - height:.1f}" '
            f'width="{100 / slots - 0.3:.2f}%" height="{height:.1f}" class="fire">'
            f"<title>{len(due)} from {start} UTC: {escape(shown)}</title></rect>"
        )
    return _fluid(base + 22, "".join(body), f"next fires, {hours} hours, per half hour")


def _scale(values: Sequence[float]) -> float:
    """The duration the chart's full height stands for: the longest, unless a few runs took far
    longer than the rest (a time-out among quick runs), which would flatten every other bar;
    then twice the 90th percentile, and the longer bars are cut off at the top."""
    ordered = sorted(values)
    longest = ordered[-1] if ordered else 0.0
    typical = ordered[int(0.9 * (len(ordered) - 1))] if ordered else 0.0
    if typical > 0 and longest > 4 * typical:
        return 2 * typical
    return longest or 1.0


def durations(runs: Sequence[tuple[datetime, str, float | None]]) -> Markup:
    """A bar per run (oldest left), its height the run's duration, its colour its status; a
    dashed line marks the duration of the full height, labelled with it (and with the longest
    when longer bars are cut off there, each with a white notch)."""
    if not runs:
        return Markup('<p class="muted">no runs yet</p>')
    longest = max((d or 0.0) for _, _, d in runs)
    scale = _scale([d or 0.0 for _, _, d in runs])
    top, base = 16, 96
    step = 100 / len(runs)
    note = _took(scale) if scale >= longest else f"{_took(scale)} (longest {_took(longest)})"
    bars = [
        f'<line x1="0" y1="{top}" x2="100%" y2="{top}" class="grid"/>'
        f'<text x="0" y="{top - 4}" class="axis">{escape(note)}</text>'
        f'<line x1="0" y1="{base}" x2="100%" y2="{base}" class="axis-line"/>'
    ]
    for i, (started, status, seconds) in enumerate(runs):
        cut = (seconds or 0.0) > scale
        h = base - top if cut else max(2.0, (base - top) * (seconds or 0.0) / scale)
        when = started.strftime("%Y-%m-%d %H:%M:%S")
        took = "no duration" if seconds is None else _took(seconds)
        x, width = f"{i * step + step * 0.1:.2f}%", f"{step * 0.8:.2f}%"
        bars.append(
            f'<rect x="{x}" y="{base - h:.1f}" width="{width}" height="{h:.1f}" '
            f'fill="{_colour(status)}">'
            f"<title>{escape(when)} UTC: {escape(status)}, {escape(took)}</title></rect>"
        )
        if cut:
            bars.append(f'<rect x="{x}" y="{top + 5}" width="{width}" height="3" class="notch"/>')
    label = f"durations of the last {len(runs)} runs (longest {_took(longest or 0.0)})"
    return _fluid(base + 2, "".join(bars), label)


def calendar(outcomes: Sequence[tuple[date, str, int]], today: date, days: int = 35) -> Markup:
    """Weeks as rows (Monday first), days as numbered cells coloured by their worst outcome
    (empty: no runs), under weekday initials; a legend names the colours shown."""
    by_day: dict[date, dict[str, int]] = {}
    for day, status, runs in outcomes:
        by_day.setdefault(day, {})[status] = runs
    cell, gap, head = 26, 4, 18
    first = today - timedelta(days=days - 1)
    first -= timedelta(days=first.weekday())
    parts = [
        f'<text x="{col * (cell + gap) + cell / 2}" y="12" class="axis" '
        f'text-anchor="middle">{letter}</text>'
        for col, letter in enumerate(WEEKDAYS)
    ]
    seen: set[str] = set()
    day, row = first, 0
    while day <= today:
        col = day.weekday()
        statuses = by_day.get(day, {})
        worst = next((s for s in SEVERITY if statuses.get(s)), None)
        if worst:
            seen.add(worst)
        x, y = col * (cell + gap), head + row * (cell + gap)
        summary = ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())) or "no runs"
        parts.append(
            f"<g><title>{day.isoformat()}: {escape(summary)}</title>"
            f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" rx="4" '
            f'fill="{_colour(worst) if worst else EMPTY_DAY}"/>'
            f'<text x="{x + cell / 2}" y="{y + 17}" text-anchor="middle" '
            f'class="{"day on" if worst else "day"}">{day.day}</text></g>'
        )
        if col == 6:
            row += 1
        day += timedelta(days=1)
    rows = row + (0 if today.weekday() == 6 else 1)
    width = 7 * (cell + gap) - gap
    x, y = 0, head + rows * (cell + gap) + 4
    for status in (s for s in SEVERITY if s in seen):  # the legend, wrapped to the width
        room = 22 + 7 * len(status)
        if x and x + room > width:
            x, y = 0, y + 16
        parts.append(
            f'<rect x="{x}" y="{y}" width="10" height="10" rx="2" fill="{_colour(status)}"/>'
            f'<text x="{x + 14}" y="{y + 9}" class="axis">{escape(status)}</text>'
        )
        x += room
    height = y + (14 if seen else 0)
    return Markup(
        f'<svg class="chart calendar" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="outcomes of the last {days} days">{"".join(parts)}</svg>'
    )
