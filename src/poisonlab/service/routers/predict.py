"""``POST /v1/predict`` and ``POST /v1/predict/batch`` (viewer).

Every image is checked against the service's decode-cost limits from its header before it is
decoded, and a batch's files all together (:mod:`poisonlab.service.decode`); a JSON batch is
parsed with its nesting depth bounded (:mod:`poisonlab.service.json_body`).
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from poisonlab.service.decode import decode_files, decode_image, decode_instances, probe_image
from poisonlab.service.deps import ServingDep, StateDep, ViewerDep
from poisonlab.service.errors import ServiceError
from poisonlab.service.json_body import is_json_media, request_json
from poisonlab.service.routers.common import BINARY, errors, form_file, multipart_body, read_form
from poisonlab.service.schemas import BatchPredictionOut, Prediction, PredictionOut
from poisonlab.service.serving import Loaded
from poisonlab.service.state import ServiceState

router = APIRouter(prefix="/v1", tags=["predict"])
_BATCH_BODY = multipart_body({"files": {"type": "array", "items": BINARY}}, ["files"])
_BATCH_BODY["requestBody"]["content"]["application/json"] = {
    "schema": {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "minItems": 1, "items": {"type": "array"}}},
    }
}


def _predictions(loaded: Loaded, probs: np.ndarray) -> list[Prediction]:
    names = loaded.class_names
    labels = probs.argmax(axis=1)
    return [
        Prediction(
            label=int(k),
            class_name=names[int(k)],
            probabilities={n: round(float(v), 6) for n, v in zip(names, p, strict=True)},
        )
        for k, p in zip(labels, probs, strict=True)
    ]


async def _infer(state: ServiceState, loaded: Loaded, images: np.ndarray) -> list[Prediction]:
    probs = await state.server.predict_async(loaded, images)
    shift = state.observe_predictions(loaded, probs.argmax(axis=1))
    if shift is not None:  # rare: a database write, kept off the event loop
        await run_in_threadpool(state.raise_shift_alert, loaded, shift)
    return _predictions(loaded, probs)


@router.post(
    "/predict",
    response_model=PredictionOut,
    responses=errors(401, 403, 413, 415, 422, 503),
    openapi_extra=multipart_body({"file": BINARY}, ["file"]),
    summary="Classify one image (any common format, resized like the chapter)",
)
async def predict(request: Request, _actor: ViewerDep, loaded: ServingDep, state: StateDep) -> PredictionOut:
    form = await read_form(request)
    data, name = await form_file(form, "file")

    x = await run_in_threadpool(
        decode_image,
        data,
        loaded.input_shape,
        limits=state.settings.image_limits,
        name=name,
        budget=state.decode_budget,
    )
    pred = (await _infer(state, loaded, x[np.newaxis]))[0]
    width, height = probe_image(data, limits=state.settings.image_limits, name=name)
    note = out_of_distribution_note((width, height), loaded.input_shape)
    return PredictionOut(model_version=loaded.version_id, input_note=note, **pred.model_dump())


#: an upload whose longer side is this many times the model's input side gets a note
SHRINK_NOTE_FACTOR = 4


def out_of_distribution_note(size: tuple[int, int], input_shape: tuple[int, ...]) -> str | None:
    """A plain-words warning when an upload (width, height) is far larger than the model's input.

    A classifier answers every input with one of its classes, often confidently: a photo of a
    jet given to an 8x8 digits model still comes back as some digit. The size ratio is a cheap,
    certain sign that the upload is not like the training images; it is not an OOD detector.
    """
    side = max(int(input_shape[0]), int(input_shape[1]))
    longest = max(size)
    if longest < SHRINK_NOTE_FACTOR * side:
        return None
    kind = "grayscale" if int(input_shape[2]) == 1 else "colour"
    return (
        f"this model was trained on {input_shape[1]}x{input_shape[0]} {kind} images; the upload "
        f"({size[0]}x{size[1]}) was shrunk {longest / side:.0f}x to fit. The answer only says which "
        "class the shrunk image resembles most: an image unlike every class still gets one."
    )


async def _batch_files(request: Request, state: ServiceState) -> list[tuple[bytes, str]]:
    limit = state.settings.max_batch
    form = await read_form(request, max_files=limit + 1)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not files:
        raise ServiceError(422, "invalid_input", "files: at least one file field named 'files' is required")
    if len(files) > limit:
        raise ServiceError(422, "bad_instances", f"{len(files)} files exceed the batch limit of {limit}")
    return [(await f.read(), f.filename or f"files[{i}]") for i, f in enumerate(files)]


async def _batch_json(request: Request, state: ServiceState) -> object:
    payload = await request_json(request, max_depth=state.settings.max_json_depth)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise ServiceError(422, "bad_instances", 'expected a JSON object {"instances": [...]}')
    return payload["instances"]


@router.post(
    "/predict/batch",
    response_model=BatchPredictionOut,
    responses=errors(401, 403, 413, 415, 422, 503),
    openapi_extra=_BATCH_BODY,
    summary="Classify several images: multipart files, or JSON instances (the chapter's /predict_multiple)",
)
async def predict_batch(
    request: Request, _actor: ViewerDep, loaded: ServingDep, state: StateDep
) -> BatchPredictionOut:
    ctype = request.headers.get("content-type", "")
    settings = state.settings
    as_json = is_json_media(ctype)
    if not (as_json or ctype.lower().startswith("multipart/form-data")):
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"expected multipart/form-data or application/json, got {ctype[:100] or 'no content type'}",
        )
    if as_json:
        instances = await _batch_json(request, state)

        def decode():
            return decode_instances(
                instances,
                loaded.input_shape,
                max_batch=settings.max_batch,
                max_total_pixels=settings.max_batch_pixels,
                budget=state.decode_budget,
            )
    else:
        files = await _batch_files(request, state)

        def decode():
            return decode_files(
                files,
                loaded.input_shape,
                limits=settings.image_limits,
                max_total_pixels=settings.max_batch_pixels,
                budget=state.decode_budget,
            )

    images = await run_in_threadpool(decode)
    return BatchPredictionOut(
        model_version=loaded.version_id, predictions=await _infer(state, loaded, images)
    )
