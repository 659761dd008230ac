"""Helpers shared by the routers: multipart form fields and OpenAPI bits.

The service's components and the caller's role come from :mod:`poisonlab.service.deps`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
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
    return await request.form(max_files=max_files, max_fields=max_fields)


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
