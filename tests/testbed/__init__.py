"""Tests of the testbed's models and golden set; shared helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

_converted: dict[str, Path] = {}


def converted_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whisper-base.pt converted in this test session (once), via ``testbed.models.prepare``."""
    if "path" not in _converted:
        from testbed.models import prepare

        model_dir = tmp_path_factory.mktemp("models")
        paths = prepare(model_dir, progress=lambda _msg: None)
        _converted["path"] = paths["whisper-base"]
    return _converted["path"]
