"""The one-line wording of pydantic errors shared by the CLI, the config loaders and the service."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from poisonlab.error_text import MAX_PROBLEMS, field_problems, fold_lines


class _Inner(BaseModel):
    rate: float


class _Outer(BaseModel):
    db_url: str
    inner: _Inner


class _Checked(BaseModel):
    name: str
    size: int

    @field_validator("name")
    @classmethod
    def _no_x(cls, value: str) -> str:
        if "x" in value:
            raise ValueError(f"must not contain x, got {value!r}")
        return value

    @field_validator("size")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even")
        return value


def _errors(data: object) -> list[dict]:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate(data)
    return info.value.errors()


def test_each_problem_is_a_dotted_location_and_its_message() -> None:
    text = field_problems(_errors({"db_url": 3, "inner": {"rate": "x"}}))
    assert text == (
        "db_url: Input should be a valid string, got 3; "
        "inner.rate: Input should be a valid number, unable to parse string as a number, got 'x'"
    )


def test_the_refused_value_is_named_when_it_is_a_scalar_and_cut_when_long() -> None:
    missing = field_problems(_errors({"inner": {"rate": 1.0}}))
    assert missing == "db_url: Field required"  # no "got {...}": the input is the whole object
    long = field_problems([{"loc": ("x",), "msg": "bad", "input": "y" * 100}])
    assert long == f"x: bad, got '{'y' * 39}..."
    assert field_problems([{"loc": ("x",), "msg": "bad", "input": [1, 2]}]) == "x: bad"


def test_rename_names_the_first_part_as_the_person_typed_it() -> None:
    text = field_problems(
        _errors({"db_url": 3, "inner": {"rate": "x"}}), rename={"db_url": "--db", "rate": "r"}
    )
    assert text.startswith("--db: Input should be a valid string, got 3; inner.rate: ")


def test_skipped_parts_and_an_empty_location() -> None:
    errors = [{"loc": ("body", "file"), "msg": "Field required"}, {"loc": ("body",), "msg": "bad"}]
    assert field_problems(errors, skip=("body",), empty="body") == "file: Field required; body: bad"
    assert field_problems([{"loc": (), "msg": "m"}]) == "value: m"


def test_at_most_five_problems_and_always_one_line() -> None:
    errors = [{"loc": (f"f{i}",), "msg": "line one\n  line two"} for i in range(MAX_PROBLEMS + 3)]
    text = field_problems(errors)
    assert "\n" not in text
    assert text.count(";") == MAX_PROBLEMS - 1
    assert "f0: line one line two" in text
    assert field_problems([]) == ""


def test_fold_lines() -> None:
    assert fold_lines("  a\n\tb   c \n") == "a b c"


def test_a_validators_own_words_lose_pydantics_prefix_and_say_got_once() -> None:
    with pytest.raises(ValidationError) as info:
        _Checked.model_validate({"name": "axe", "size": 3})
    text = field_problems(info.value.errors())
    assert text == "name: must not contain x, got 'axe'; size: must be even, got 3"
