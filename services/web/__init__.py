"""The HTTP surface: one FastAPI app served by uvicorn on its own thread (`server.py`).

- operations endpoints, unchanged, with deadlines (`ops_routes.py`, `readiness.py`);
- the REST API under /api/v1 (`api_schedules.py`, `api_runs.py`, `api_admin.py`), bearer tokens
  and roles (`auth.py`), problem+json errors (`problems.py`), bodies (`schemas.py`);
- /openapi.json, and /docs rendered from it without anything fetched from outside.

Works over the stores and an `OpsView` of the process; never imports the engine, the watcher
or `services.enhanced_scheduler` (the live instances come in as a callable).
"""
