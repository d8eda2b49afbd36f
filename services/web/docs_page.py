"""`/docs`: the API's reference as one self-contained HTML page, rendered from the OpenAPI
document. Nothing is fetched from outside (FastAPI's Swagger UI loads its script from a CDN,
which a scheduler on a closed network cannot reach)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_templates = Environment(
    loader=PackageLoader("services.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
METHODS = ("get", "post", "put", "patch", "delete")


def _operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    operations = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "tag": (op.get("tags") or ["other"])[0],
                    "parameters": [
                        {
                            "name": p["name"],
                            "where": p["in"],
                            "required": p.get("required", False),
                            "description": p.get("description", ""),
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": "requestBody" in op,
                    "statuses": sorted(op.get("responses", {})),
                    "secured": bool(op.get("security")),
                }
            )
    return operations


def render_docs(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    return _templates.get_template("api_docs.html").render(
        title=info.get("title", "API"), version=info.get("version", ""), ops=_operations(spec)
    )
