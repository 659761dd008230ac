"""The single-image prediction says when an upload is far from what the model was trained on."""

from __future__ import annotations

import numpy as np

from poisonlab.service.routers.predict import SHRINK_NOTE_FACTOR, out_of_distribution_note


def test_the_note_names_the_sizes_and_appears_only_for_large_uploads() -> None:
    assert out_of_distribution_note((8, 8), (8, 8, 1)) is None
    assert out_of_distribution_note((8 * SHRINK_NOTE_FACTOR - 1, 10), (8, 8, 1)) is None
    note = out_of_distribution_note((1024, 768), (8, 8, 1))
    assert note is not None and "8x8 grayscale" in note and "1024x768" in note and "128x" in note
    assert "colour" in out_of_distribution_note((640, 480), (32, 32, 3))


def test_a_photo_sized_upload_gets_the_note_and_a_digit_sized_one_does_not(service, png) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    digit = rng.integers(0, 256, size=(8, 8, 1), dtype=np.uint8)
    answers = {}
    for name, image in (("photo", photo), ("digit", digit)):
        response = service.client.post(
            "/v1/predict", files={"file": (f"{name}.png", png(image))}, headers=service.headers("viewer")
        )
        assert response.status_code == 200, response.text
        answers[name] = response.json()
    assert "400x300" in answers["photo"]["input_note"] and answers["digit"]["input_note"] is None
    # the answer itself is unchanged: a class and its probabilities
    assert answers["photo"]["class_name"] in answers["photo"]["probabilities"]
