"""The JSON depth and size check run before any parser (services/web/json_shape.py)."""

from __future__ import annotations

import json

import pytest

from services.web.json_shape import shape_problem

DEEP = "JSON nested deeper than 4 levels"
MANY = "JSON with more than 10 members and items"


def check(text: str) -> str | None:
    return shape_problem(text.encode(), max_depth=4, max_members=10)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[[[1]]]]", None),
        ("[[[[[1]]]]]", DEEP),
        ('{"a": {"b": {"c": {"d": 1}}}}', None),
        ('{"a": {"b": {"c": {"d": {}}}}}', DEEP),
        ("[" * 100_000, DEEP),
        ('"[[[[[[[[[["', None),  # brackets inside a string are text
        ('["\\"[[[[[[", 1]', None),  # so are they after an escaped quote
        ('["\\\\", [[[[1]]]]]', DEEP),  # an escaped backslash ends before the quote
        ("[1,2,3,4,5,6,7,8,9]", None),
        ("[1,2,3,4,5,6,7,8,9,10,11]", MANY),
        ('{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11}', MANY),
        ("[[],[],[],[],[],[]]", MANY),  # empty containers count
        ('["a,b,c,d,e,f,g,h,i,j,k,l"]', None),  # commas in a string do not
        ("", None),
        ("not json at all ]]]]", None),  # validity is the parser's call
    ],
)
def test_depth_and_members_outside_strings(text: str, problem: str | None) -> None:
    assert check(text) == problem


def test_what_it_accepts_the_parser_reads_without_recursing_too_deep() -> None:
    text = json.dumps({"a": [[[1]]], "b": "[[[[[[[["})
    assert check(text) is None
    assert json.loads(text)["b"] == "[[[[[[[["
