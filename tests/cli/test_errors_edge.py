"""The CLI edge's one-line rule for messages that arrive with several lines."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from poisonlab.cli._errors import one_line


class _Settings(BaseModel):
    lr: float = Field(gt=0)
    name: str


def test_a_validation_error_becomes_field_problem_pairs_on_one_line() -> None:
    with pytest.raises(ValidationError) as info:
        _Settings.model_validate({"lr": -1})
    text = one_line(info.value)
    assert text == "invalid _Settings: lr: Input should be greater than 0, got -1; name: Field required"


def test_other_messages_have_their_line_breaks_folded() -> None:
    assert one_line(ValueError("first line\n  second   line\n")) == "first line second line"
