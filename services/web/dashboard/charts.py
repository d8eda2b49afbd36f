"""The dashboard's charts as inline SVG, drawn on the server: no script, no external library.

Each function takes plain data and returns markup (every text in it escaped) that scales to the
width of its container, so one drawing serves a laptop and a phone.
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


def _colour(status: str) -> str:
    return COLOURS.get(status, "#95a5a6")


def _svg(width: int, height: int, body: str, label: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMinYMin meet">{body}</svg>'
    )


def status_bars(counts: Mapping[str, int], label: str) -> Markup:
    """One horizontal bar per status, longest = the most runs."""
    items = [(s, n) for s, n in counts.items() if n]
    if not items:
        return Markup('<p class="muted">no runs</p>')
    most = max(n for _, n in items)
    rows = []
    for i, (status, n) in enumerate(items):
        y = i * 22
        width = max(2.0, 300 * n / most)
        rows.append(
            f'<text x="0" y="{y + 14}" class="axis">{escape(status)}</text>'
            f'<rect x="90" y="{y + 3}" width="{width:.1f}" height="14" rx="2" '
            f'fill="{_colour(status)}"><title>{escape(status)}: {n}</title></rect>'
            f'<text x="{96 + width:.1f}" y="{y + 14}" class="value">{n}</text>'
        )
    return _svg(460, len(items) * 22, "".join(rows), label)


def timeline(fires: Sequence[tuple[str, datetime]], now: datetime, hours: int = 24) -> Markup:
    """The next fires on a line from now to `hours` ahead; each dot is titled with its name."""
    width, left, right = 600, 10, 590
    span = timedelta(hours=hours).total_seconds()
    ticks = []
    for h in range(0, hours + 1, 6):
        x = left + (right - left) * h / hours
        ticks.append(
            f'<line x1="{x:.1f}" y1="30" x2="{x:.1f}" y2="36" class="tick"/>'
            f'<text x="{x:.1f}" y="50" class="axis" text-anchor="middle">+{h}h</text>'
        )
    dots = []
    for i, (name, moment) in enumerate(fires):
        offset = (moment - now).total_seconds()
        if not 0 <= offset <= span:
            continue
        x = left + (right - left) * offset / span
        y = 12 + (i % 3) * 6  # fires close together stay distinguishable
        when = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y}" r="4" class="fire">'
            f"<title>{escape(name)} at {escape(when)}</title></circle>"
        )
    body = f'<line x1="{left}" y1="33" x2="{right}" y2="33" class="axis-line"/>'
    return _svg(width, 56, body + "".join(ticks) + "".join(dots), f"next fires, {hours} hours")


def durations(runs: Sequence[tuple[datetime, str, float | None]]) -> Markup:
    """A bar per run (oldest left), its height the run's duration, its colour its status."""
    if not runs:
        return Markup('<p class="muted">no runs yet</p>')
    longest = max((d or 0.0) for _, _, d in runs) or 1.0
    width, height = 600, 80
    step = width / len(runs)
    bars = []
    for i, (started, status, seconds) in enumerate(runs):
        h = max(2.0, (height - 4) * (seconds or 0.0) / longest)
        when = started.strftime("%Y-%m-%d %H:%M:%S")
        took = "no duration" if seconds is None else f"{seconds:.3f}s"
        bars.append(
            f'<rect x="{i * step + 1:.1f}" y="{height - h:.1f}" width="{max(1.0, step - 2):.1f}" '
            f'height="{h:.1f}" fill="{_colour(status)}">'
            f"<title>{escape(when)} UTC: {escape(status)}, {escape(took)}</title></rect>"
        )
    label = f"durations of the last {len(runs)} runs (longest {longest:.3f}s)"
    return _svg(width, height, "".join(bars), label)


def calendar(outcomes: Sequence[tuple[date, str, int]], today: date, days: int = 35) -> Markup:
    """Weeks as rows, days as cells, each coloured by its worst outcome (empty: no runs)."""
    by_day: dict[date, dict[str, int]] = {}
    for day, status, runs in outcomes:
        by_day.setdefault(day, {})[status] = runs
    first = today - timedelta(days=days - 1)
    first -= timedelta(days=first.weekday())  # rows start on Monday
    cells = []
    day, row = first, 0
    while day <= today:
        col = day.weekday()
        statuses = by_day.get(day, {})
        worst = next((s for s in SEVERITY if statuses.get(s)), None)
        fill = _colour(worst) if worst else "#eef1f5"
        summary = ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())) or "no runs"
        cells.append(
            f'<rect x="{col * 22}" y="{row * 22}" width="18" height="18" rx="3" fill="{fill}">'
            f"<title>{day.isoformat()}: {escape(summary)}</title></rect>"
        )
        if col == 6:
            row += 1
        day += timedelta(days=1)
    rows = row + (0 if today.weekday() == 6 else 1)
    return _svg(7 * 22, max(rows, 1) * 22, "".join(cells), f"outcomes of the last {days} days")
