"""Helpers shared by the routers: multipart form fields and OpenAPI bits.

The service's components and the caller's role come from :mod:`poisonlab.service.deps`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile

from poisonlab.service.errors import ServiceError
from poisonlab.service.schemas import ErrorOut


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given error statuses."""
    return {code: {"model": ErrorOut} for code in codes}


def multipart_body(properties: dict[str, dict], required: list[str]) -> dict:
    """``openapi_extra`` describing a multipart body the endpoint parses itself (after auth)."""
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


BINARY = {"type": "string", "format": "binary"}


async def read_form(request: Request, *, max_files: int = 1, max_fields: int = 10) -> FormData:
    """Parse a multipart body (415 for another content type, 400 when malformed)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ServiceError(
            415, "unsupported_media_type", f"expected multipart/form-data, got {ctype or 'no content type'}"
        )
    _check_complete(ctype, await request.body())  # request.form() then parses these cached bytes
    return await request.form(max_files=max_files, max_fields=max_fields)


def _check_complete(ctype: str, body: bytes) -> None:
    """400 for a multipart body without its closing boundary: the parser drops a part cut off
    mid-way without a word, so a truncated upload read as "file: a file field is required"."""
    boundary = parse_options_header(ctype)[1].get(b"boundary")
    if not boundary:
        raise ServiceError(400, "bad_request", "multipart/form-data needs a boundary parameter")
    close = b"--" + boundary + b"--"
    if not (body.startswith(close) or b"\r\n" + close in body):
        raise ServiceError(
            400,
            "bad_request",
            f"the multipart body ends before its closing boundary ({len(body):,} bytes arrived): "
            "a truncated upload",
        )


async def form_file(form: FormData, name: str) -> tuple[bytes, str]:
    """(bytes, filename) of the file field ``name``; 422 when missing or not a file."""
    value = form.get(name)
    if value is None:
        raise ServiceError(422, "invalid_input", f"{name}: a file field is required")
    if not isinstance(value, UploadFile):
        raise ServiceError(422, "invalid_input", f"{name}: must be a file upload, got a text field")
    return await value.read(), value.filename or name


def form_text(form: FormData, name: str, *, required: bool = False, max_length: int = 200) -> str | None:
    """The text field ``name`` (stripped; empty counts as missing); 422 when invalid."""
    value = form.get(name)
    if isinstance(value, UploadFile):
        raise ServiceError(422, "invalid_input", f"{name}: must be a text field, got a file")
    if value is None or not value.strip():
        if required:
            raise ServiceError(422, "invalid_input", f"{name}: field required")
        return None
    if len(value) > max_length:
        raise ServiceError(422, "invalid_input", f"{name}: at most {max_length} characters, got {len(value)}")
    return value.strip()
