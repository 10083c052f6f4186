"""Params policy: which fields a session takes, and all-or-nothing updates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from frames.frame import IMAGE_FORMATS
from models.params import Constraint, ParamConflict, ParamSpec, ParamValue
from session.errors import InvalidParams

SESSION_PARAMS = (
    ParamSpec(
        "output_format",
        str,
        "jpeg",
        "Encoding of output images.",
        choices=IMAGE_FORMATS,
    ),
    ParamSpec(
        "output_quality",
        int,
        90,
        "JPEG/WebP quality of output images.",
        minimum=1,
        maximum=100,
    ),
    ParamSpec(
        "similarity_filter",
        float,
        0.0,
        "Skip an input frame at least this similar (cosine, 0.95-0.99 is typical) to the"
        " last one the model ran, unless the params changed; 0 is off.",
        minimum=0.0,
        maximum=1.0,
    ),
)
"""Fields every session takes, whatever its model (session/similarity.py for the filter)."""


class SessionParams:
    """A session's current parameter values: the model's fields plus SESSION_PARAMS."""

    def __init__(
        self, model_params: Sequence[ParamSpec], constraints: Sequence[Constraint] = ()
    ) -> None:
        self.constraints = tuple(constraints)
        self.specs: dict[str, ParamSpec] = {
            spec.name: spec for spec in (*model_params, *SESSION_PARAMS)
        }
        self.values: dict[str, ParamValue] = {
            name: spec.default for name, spec in self.specs.items()
        }

    def update(self, changes: Mapping[str, object]) -> None:
        """Apply `changes`, or raise InvalidParams naming the first bad field and change nothing.

        The model's constraints see the values as they would be after the change."""
        accepted: dict[str, ParamValue] = {}
        for name, value in changes.items():
            spec = self.specs.get(name)
            if spec is None:
                known = ", ".join(sorted(self.specs))
                raise InvalidParams(
                    f"unknown parameter {name!r}; this model takes: {known}", field=name
                )
            try:
                accepted[name] = spec.coerce(value)
            except ValueError as error:
                raise InvalidParams(f"{name} {error}", field=name) from None
        values = {**self.values, **accepted}
        for constraint in self.constraints:
            try:
                constraint(values)
            except ParamConflict as conflict:
                raise InvalidParams(str(conflict), field=conflict.field) from None
        self.values = values

    def snapshot(self) -> dict[str, ParamValue]:
        return dict(self.values)
