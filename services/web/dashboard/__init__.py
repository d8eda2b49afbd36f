"""The dashboard at `/`: server-rendered pages over the same stores as the REST API.

HTML that works without JavaScript (forms post and redirect); `static/live.js` only refreshes
the live parts. Login exchanges an API token for a server-side session (`session.py`); every
form carries the session's CSRF token; a read-role viewer sees no edit control and is refused
if it posts anyway. Charts are SVG drawn here (`charts.py`); nothing is fetched from outside.
"""
