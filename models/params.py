"""Declarations of the parameters a model takes, with their types, ranges and defaults."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

ParamValue = str | int | float


class ParamConflict(ValueError):
    """Valid values that the model cannot take together; `field` names the one to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


Constraint = Callable[[Mapping[str, ParamValue]], None]
"""Checks a complete set of a model's param values; raises ParamConflict when they conflict."""


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter: `coerce` turns a JSON value into a valid one or raises ValueError."""

    name: str
    type: type[str] | type[int] | type[float]
    default: ParamValue
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: Sequence[str] | None = None
    max_length: int = 2000

    def coerce(self, value: object) -> ParamValue:
        # bool is an int in Python but never a valid number here.
        if isinstance(value, bool) or not _is_instance(value, self.type):
            name = _type_name(self.type)
            raise ValueError(
                f"must be {'an' if name == 'integer' else 'a'} {name}, got {_json_repr(value)}"
            )
        if self.type is float:
            value = float(value)  # type: ignore[arg-type]
        if isinstance(value, str):
            if self.choices is not None and value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}, got {value!r}")
            if len(value) > self.max_length:
                raise ValueError(f"must be at most {self.max_length} characters, got {len(value)}")
            return value
        assert isinstance(value, int | float)
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be >= {_number(self.minimum)}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be <= {_number(self.maximum)}, got {value}")
        return value

    def describe(self) -> dict[str, object]:
        """The JSON form listed by GET /v1/models."""
        described: dict[str, object] = {
            "type": _type_name(self.type),
            "default": self.default,
            "description": self.description,
        }
        if self.minimum is not None:
            described["minimum"] = _number(self.minimum)
        if self.maximum is not None:
            described["maximum"] = _number(self.maximum)
        if self.choices is not None:
            described["choices"] = list(self.choices)
        return described


def _is_instance(value: object, expected: type) -> bool:
    if expected is float:
        return isinstance(value, int | float)
    return isinstance(value, expected)


def _type_name(expected: type) -> str:
    return {str: "string", int: "integer", float: "number"}[expected]


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _json_repr(value: object) -> str:
    names = {type(None): "null", bool: "a boolean", list: "an array", dict: "an object"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return repr(value)
