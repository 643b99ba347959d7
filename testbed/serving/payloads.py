"""Request bodies of the service routes, the error they answer with, and decoding of what clients send."""

from __future__ import annotations

import base64
import binascii
import io
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TextsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1)


class ImagesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(min_length=1, description="base64-encoded PNG or JPEG images")


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str | None = None
    messages: list[dict[str, str]] | None = None


class RouterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    image_b64: str | None = None
    audio_b64: str | None = None
    language: str | None = None


class ServiceError(Exception):
    """An error answered as ``{"error": message, "version": ...}`` with HTTP ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_image(b64: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError(400, f"image is not valid base64: {exc}") from exc
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.width * im.height > 4096 * 4096:
                raise ServiceError(400, "image too large (max 4096x4096 pixels)")
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ServiceError(400, f"image is not a readable PNG/JPEG: {exc}") from exc


def decode_b64(b64: str, what: str) -> bytes:
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ServiceError(400, f"{what} is not valid base64: {exc}") from exc


def json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ServiceError(400, f"body is not valid JSON: {exc}") from exc
