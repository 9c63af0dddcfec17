"""Request parameters, declared once: each declaration parses what a client sent and describes
itself in the OpenAPI document, so the document says exactly what the server accepts.

Contracts:
- :func:`parse_query` accepts only declared parameters, each at most once; a
  missing required one, an unknown or repeated one, or a value outside its
  declaration is a 400 naming the parameter. ``tenant`` is never a parameter:
  the API key decides the tenant.
- Numbers are read strictly (digits, an optional fraction and exponent: no
  spaces, underscores, ``nan`` or ``inf``), so what the document calls an
  integer or a number is exactly what passes.
- :func:`parse_body` decodes a JSON body into a msgspec type (unknown fields
  refused); a problem is a 400 naming the field.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal, TypeVar

import msgspec
from multidict import MultiMapping

from pipeline.api.errors import bad_parameter
from pipeline.contracts.schemas import BROKER, SYMBOL, NamePattern

_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,18})")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_NAME_SUFFIX = r"$(?!\n)"

#: The latest time a message may carry (2100-01-01, as in the message schemas), in epoch ms.
MAX_TIME_MS = 4_102_444_800_000

T = TypeVar("T")


def openapi_pattern(pattern: NamePattern) -> str:
    """A name pattern as an ECMA-262 regex for the OpenAPI document (``$`` there allows no trailing newline)."""
    return pattern.regex.removesuffix(_NAME_SUFFIX) + "$"


@dataclass(frozen=True)
class Param(ABC):
    """One query or path parameter. ``default`` applies when an optional query parameter is absent."""

    name: str
    description: str
    _: KW_ONLY
    required: bool = False
    location: Literal["query", "path"] = "query"
    default: Any = None

    @abstractmethod
    def parse(self, raw: str) -> Any:
        """The value of ``raw``; raises a 400 :class:`~pipeline.api.errors.ApiError` naming the parameter."""

    @abstractmethod
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the value in the OpenAPI document."""

    def openapi(self) -> dict[str, Any]:
        schema = self.schema()
        if self.default is not None:
            schema["default"] = self.default
        return {"name": self.name, "in": self.location, "required": self.required or self.location == "path",
                "description": self.description, "schema": schema}


@dataclass(frozen=True)
class Name(Param):
    """A name (symbol, broker, strategy, ...) matching one of the message schemas' name patterns."""

    pattern: NamePattern

    def parse(self, raw: str) -> str:
        try:
            self.pattern.check(self.name, raw)
        except ValueError:
            raise bad_parameter(self.name, f"must match {openapi_pattern(self.pattern)}") from None
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": openapi_pattern(self.pattern)}


@dataclass(frozen=True)
class Choice(Param):
    """One of a fixed set of strings."""

    choices: tuple[str, ...]

    def parse(self, raw: str) -> str:
        if raw not in self.choices:
            raise bad_parameter(self.name, f"must be one of {', '.join(self.choices)}")
        return raw

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Integer(Param):
    """A decimal integer in ``[minimum, maximum]``."""

    minimum: int
    maximum: int

    def parse(self, raw: str) -> int:
        if not _INTEGER.fullmatch(raw):
            raise bad_parameter(self.name, "must be a decimal integer")
        value = int(raw)
        if not self.minimum <= value <= self.maximum:
            raise bad_parameter(self.name, f"must be between {self.minimum} and {self.maximum}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class Number(Param):
    """A finite decimal number in ``[minimum, maximum]``."""

    minimum: float
    maximum: float

    def parse(self, raw: str) -> float:
        if not _NUMBER.fullmatch(raw):
            raise bad_parameter(self.name, "must be a decimal number")
        value = float(raw)
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            raise bad_parameter(self.name, f"must be between {self.minimum:g} and {self.maximum:g}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.minimum, "maximum": self.maximum}


def time_param(name: str, description: str) -> Integer:
    """A point in time as epoch milliseconds (UTC), as ``time_msc`` in the messages."""
    return Integer(name, f"{description} Epoch milliseconds (UTC).", 0, MAX_TIME_MS)


_RESERVED = {"tenant": "not a parameter: the API key decides the tenant"}


def parse_query(query: MultiMapping[str], params: tuple[Param, ...]) -> dict[str, Any]:
    """The declared query parameters of ``query``, by name, defaults filled in (absent optional ones: None)."""
    declared = {p.name: p for p in params if p.location == "query"}
    for name in query:
        if name not in declared:
            raise bad_parameter(name, _RESERVED.get(name, "unknown parameter"))
    values: dict[str, Any] = {}
    for name, param in declared.items():
        given = query.getall(name, [])
        if len(given) > 1:
            raise bad_parameter(name, "given more than once")
        if given:
            values[name] = param.parse(given[0])
        elif param.required:
            raise bad_parameter(name, "required")
        else:
            values[name] = param.default
    return values


def parse_path(match: Mapping[str, str], params: tuple[Param, ...]) -> dict[str, Any]:
    """The path parameters of a matched route, parsed."""
    return {p.name: p.parse(match[p.name]) for p in params if p.location == "path"}


_FIELD = re.compile(r"`\$\.([A-Za-z_]+)")
_NAMED_FIELD = re.compile(r"field `([A-Za-z_]+)`")


def parse_body(raw: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """``raw`` decoded by ``decoder``; a 400 naming the field (or ``body``) when it does not fit."""
    if not raw.strip():
        raise bad_parameter("body", "a JSON object is required")
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _FIELD.search(text) or _NAMED_FIELD.search(text)
        if found:
            raise bad_parameter(found.group(1), text) from None
        raise bad_parameter("body", text) from None
    except msgspec.DecodeError as exc:
        raise bad_parameter("body", f"not valid JSON ({exc})") from None


def symbol_param(description: str = "The symbol, e.g. EURUSD.", *, required: bool = True) -> Name:
    return Name("symbol", description, SYMBOL, required=required)


def broker_param(description: str = "Only this broker's data (absent: every broker's).", *, required: bool = False) -> Name:
    return Name("broker", description, BROKER, required=required)


def timeframe_param(timeframes: tuple[str, ...], description: str = "Bar length.") -> Choice:
    """A timeframe the pipeline computes (``TICKWIRE_CANDLE_TIMEFRAMES``)."""
    return Choice("timeframe", description, timeframes, required=True)
