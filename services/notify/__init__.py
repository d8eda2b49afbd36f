"""Notifications: events of finished runs, invalid rows and missed deadlines, stored once in an
outbox and delivered to webhook, Slack and email channels by whichever instance takes them.

`events` (pure: which events a finished run raises), `missed` (pure: occurrences without a
completed run in time), `targets` (what a channel may point at), `messages` (the bodies),
`senders` (HTTP and SMTP), `producer` (runs → outbox), `delivery` (outbox → channels),
`assembly` (builds both from the settings). Nothing here runs on a run's path.
"""
