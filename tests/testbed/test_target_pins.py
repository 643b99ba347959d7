"""The checksums phase 1 expects (runbooks/targets.yaml) are the ones the testbed really loads."""

from __future__ import annotations

from diagnostics.runbooks import load_runbooks
from testbed import models


def test_targets_yaml_pins_the_testbed_model_files() -> None:
    pinned = {m.name: m.sha256 for m in load_runbooks(environ={}).targets.get("testbed").models}
    assert pinned == {
        "clip-shapes": models.CLIP_SHAPES_SHA256,
        "all-MiniLM-L6-v2": models.MINILM_SHA256,
        "whisper-base": models.WHISPER_BASE_SHA256,
    }
    # The kept CLIP checkpoint and the installed MiniLM weights hash to these values right now.
    assert models.sha256_file(models.clip_checkpoint_path()) == models.CLIP_SHAPES_SHA256
    assert models.sha256_file(models.minilm_path() / "model.safetensors") == models.MINILM_SHA256
