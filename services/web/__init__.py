"""The HTTP surface: today the operations endpoints (/health, /ready, /status, /metrics); the REST
API and the dashboard come next.

Sees the scheduler only through the `OpsView` protocol; never imports
`services.enhanced_scheduler`.
"""
