from collections.abc import Mapping

import pytest

from models.effects import INVERT
from models.params import ParamConflict, ParamSpec, ParamValue
from session.errors import InvalidParams
from session.params import SessionParams

SPECS = (
    ParamSpec("prompt", str, "a fox", "what to draw", max_length=10),
    ParamSpec("strength", float, 0.5, "how much to change", minimum=0, maximum=1),
    ParamSpec("steps", int, 2, "denoising steps", minimum=1, maximum=8),
)


def test_defaults_include_output_params() -> None:
    params = SessionParams(SPECS)
    assert params.snapshot() == {
        "prompt": "a fox",
        "strength": 0.5,
        "steps": 2,
        "output_format": "jpeg",
        "output_quality": 90,
        "similarity_filter": 0.0,
    }


def test_update_coerces_integers_to_floats() -> None:
    params = SessionParams(SPECS)
    params.update({"strength": 1, "steps": 4, "prompt": "a cat"})
    assert params.values["strength"] == 1.0
    assert isinstance(params.values["strength"], float)
    assert params.values["steps"] == 4
    assert params.values["prompt"] == "a cat"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"colour": "red"}, "colour", "unknown parameter 'colour'"),
        ({"steps": 2.5}, "steps", "must be an integer, got 2.5"),
        ({"steps": True}, "steps", "must be an integer, got a boolean"),
        ({"strength": "high"}, "strength", "must be a number, got 'high'"),
        ({"strength": 1.5}, "strength", "must be <= 1, got 1.5"),
        ({"steps": 0}, "steps", "must be >= 1, got 0"),
        ({"prompt": None}, "prompt", "must be a string, got null"),
        ({"prompt": "x" * 11}, "prompt", "at most 10 characters"),
        ({"output_format": "gif"}, "output_format", "must be one of jpeg, png, webp"),
    ],
)
def test_a_bad_field_is_named_and_changes_nothing(
    change: dict[str, object], field: str, words: str
) -> None:
    params = SessionParams(SPECS)
    before = params.snapshot()
    with pytest.raises(InvalidParams) as raised:
        params.update({"prompt": "a cat", **change})
    assert raised.value.field == field
    assert words in raised.value.message
    assert params.snapshot() == before


def test_an_effect_without_prompt_refuses_one() -> None:
    params = SessionParams(INVERT.params)
    with pytest.raises(InvalidParams, match="takes: delay_ms, output_format, output_quality"):
        params.update({"prompt": "a cat"})


def at_least_one_step(values: Mapping[str, ParamValue]) -> None:
    if float(values["strength"]) * int(values["steps"]) < 1:
        raise ParamConflict("strength", "steps x strength must be at least 1")


def test_constraints_see_the_values_after_the_update_and_refuse_it_whole() -> None:
    params = SessionParams(SPECS, [at_least_one_step])
    params.update({"steps": 4, "strength": 0.25})  # 1.0: fine together
    with pytest.raises(InvalidParams, match="steps x strength") as refused:
        params.update({"steps": 2, "prompt": "a cat"})  # 0.5 with the current strength
    assert refused.value.field == "strength"
    assert (params.values["steps"], params.values["prompt"]) == (4, "a fox")
