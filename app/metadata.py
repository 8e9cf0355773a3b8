"""An upload's metadata: a JSON object, parsed under limits that keep the parser and both catalogs safe.

Python's JSON parser recurses once per nesting level (10,000 levels raise RecursionError) and
turns digits into an int in quadratic time (past 4,300 digits it refuses), so depth and integer
length are checked on the text, before parsing. What parses must also be storable and servable
as it was sent: NaN and Infinity are not JSON (PostgreSQL refuses them, SQLite would keep null),
NUL cannot be stored by PostgreSQL's jsonb and other tools, and a lone surrogate cannot be
written back out as UTF-8.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from indexer.settings import Settings

# A JSON string literal (escapes included), removed before counting brackets.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPENING = {"[": 1, "{": 1, "]": -1, "}": -1}
# Strings without NUL, as JSON Schema writes it.
NO_NUL_PATTERN = "^[^\\u0000]*$"


@dataclass(frozen=True)
class MetadataLimits:
    max_bytes: int = 16 * 1024
    max_depth: int = 16
    max_int_digits: int = 19

    @classmethod
    def from_settings(cls, settings: Settings) -> MetadataLimits:
        return cls(
            max_bytes=settings.max_metadata_bytes,
            max_depth=settings.max_metadata_depth,
            max_int_digits=settings.max_metadata_int_digits,
        )


def parse_metadata(text: str, limits: MetadataLimits) -> dict[str, Any]:
    """The JSON object in `text`; ValueError with a reason the client can act on otherwise."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise ValueError(f"is {size} bytes of JSON; the limit is {limits.max_bytes}")
    depth = nesting_depth(text)
    if depth > limits.max_depth:
        raise ValueError(f"nests {depth} levels deep; the limit is {limits.max_depth}")

    def parse_int(literal: str) -> int:
        digits = len(literal.lstrip("-"))
        if digits > limits.max_int_digits:
            raise _Refused(f"has an integer of {digits} digits; the limit is {limits.max_int_digits}")
        return int(literal)

    bound = 10**limits.max_int_digits - 1

    def parse_float(literal: str) -> float:
        # Bounded like the integers, as the schema says: JSON Schema's `maximum` holds for every
        # number, and a float past 2**53 is an integer to a validator (1e20 is 100000000000000000000).
        number = float(literal)
        if not math.isfinite(number) or abs(number) > bound:
            raise _Refused(f"has a number out of range ({literal[:40]}); numbers lie within ±{bound}")
        return number

    def parse_constant(name: str) -> float:
        raise _Refused(f"has {name}, which is not a JSON number; send a finite number, a string or null")

    try:
        value = json.loads(text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant)
    except _Refused as error:
        raise ValueError(str(error)) from None
    except ValueError as error:  # json.JSONDecodeError
        raise ValueError(f"is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    _check_strings(value)
    return value


def metadata_value_schema(limits: MetadataLimits, ref: str) -> dict[str, Any]:
    """JSON Schema of a value inside metadata (`ref` points back at it for nested values).

    `minimum` and `maximum` bound every number, integer or not, and `parse_metadata` applies the
    same bound to both (a negative case the fuzzer sends, {"a": 1e20}, was once accepted). One schema over every JSON type (each keyword applies to its own type) rather than `anyOf`,
    so a validator or fuzzer never mistakes a value of another branch for an invalid one. Depth
    and total size cannot be said here; the metadata field's description states them.
    """
    bound = 10**limits.max_int_digits - 1
    return {
        "title": "MetadataValue",
        "description": "any JSON value: no NaN or Infinity, no NUL in strings, integers of at most "
        f"{limits.max_int_digits} digits and no number beyond them",
        "type": ["string", "number", "boolean", "null", "array", "object"],
        "pattern": NO_NUL_PATTERN,
        "minimum": -bound,
        "maximum": bound,
        "items": {"$ref": ref},
        "additionalProperties": {"$ref": ref},
        "propertyNames": {"pattern": NO_NUL_PATTERN},
    }


def nesting_depth(text: str) -> int:
    """Deepest nesting of arrays and objects in JSON text (0 for a scalar), ignoring brackets in strings."""
    depth = deepest = 0
    for char in _STRING.sub("", text):
        step = _OPENING.get(char)
        if step is not None:
            depth += step
            deepest = max(deepest, depth)
    return deepest


class _Refused(ValueError):
    """A parse hook's refusal, told apart from the parser's own syntax errors."""


def _check_strings(value: dict[str, Any]) -> None:
    """Every key and string is text both databases keep and a JSON response can carry."""
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key in item:
                _check_text(key)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise ValueError("has a NUL character (\\u0000) in a string; it cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("has a lone surrogate (\\ud800-\\udfff) in a string; it is not valid Unicode") from None
