"""Query strings as the API reads them: a parameter that takes one value, given more than once,
is refused (422 naming it) instead of FastAPI's silent choice of the last one, which would make
`?job_type=http&job_type=command` list the command jobs alone. Parameters that take a list
(`tag`, `status`) are repeated on purpose."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Union, get_args, get_origin

from fastapi import Request
from fastapi.routing import APIRoute

from services.web.problems import Problem

_MANY = (list, tuple, set, frozenset)


def _takes_many(annotation: object) -> bool:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _takes_many(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return any(_takes_many(arg) for arg in get_args(annotation))
    return origin in _MANY or annotation in _MANY


def _single_valued(route: APIRoute) -> tuple[str, ...]:
    """The query parameters of `route` that take one value (by their names in the query)."""
    return tuple(
        field.alias
        for field in route.dependant.query_params
        if not _takes_many(field.field_info.annotation)
    )


def one_value_each(request: Request) -> None:
    """An app-wide dependency: 422 when a one-value query parameter is given more than once."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    errors = []
    for name in _single_valued(route):
        count = len(request.query_params.getlist(name))
        if count > 1:
            errors.append({"field": name, "message": f"given {count} times; it takes one value"})
    if errors:
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise Problem(422, detail, errors=errors)
