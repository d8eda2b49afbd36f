"""How deep and how big a JSON text is, read without parsing it (no recursion).

`json.loads` recurses once per nesting level, so `[[[[...` a hundred thousand deep ends in a
RecursionError; a body of a million tiny members costs a million objects before any validation
sees it. This check runs first and refuses both with a message naming the bound. It only counts
brackets and separators outside strings: whether the text is valid JSON stays the parser's call.
It runs on the event loop, so every pass over the body is done in C (`re`, `bytes`,
`itertools`): about 30 ms for a megabyte of brackets, a few for a megabyte of text.
"""

from __future__ import annotations

import operator
import re
from itertools import accumulate, count

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: fast on long strings
# Opening brackets become 2, closing ones 0, anything else goes: the running sum minus the count
# so far is the depth after each bracket, computed by itertools and operator in C.
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def shape_problem(body: bytes, *, max_depth: int, max_members: int) -> str | None:
    """Why `body` is too deep or has too many members, or None when it is within both."""
    bare = _STRING.sub(b'""', body)  # brackets and commas inside strings are text
    steps = bare.translate(_BRACKET_STEPS, _NOT_BRACKETS)
    depth = max(map(operator.sub, accumulate(steps), count(1)), default=0)
    if depth > max_depth:
        return f"JSON nested deeper than {max_depth} levels"
    # Each comma separates one more member or item; each container counts itself, so that
    # `[[],[],...]` is bounded too.
    members = bare.count(b",") + bare.count(b"[") + bare.count(b"{")
    if members > max_members:
        return f"JSON with more than {max_members} members and items"
    return None
