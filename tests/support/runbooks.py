"""Runbooks for tests that run whole incidents: the repo's, lightened where only the amount of work
changes (the scenario suite's CI subset runs the real runbooks end to end)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO


def lighter_runbooks(tmp: Path, correlate: bool = True) -> Path:
    """The repo's runbooks with phase 2's and 3's audio work cut to a clip or two and a smaller
    regression suite: for tests about phase 1, the decision and the response;
    tests/diagnostics/deep_diagnosis/ judges every clip."""
    import shutil

    import yaml

    books = tmp / "runbooks"
    shutil.copytree(REPO / "runbooks", books)
    th = yaml.safe_load((books / "thresholds.yaml").read_text())
    th["deep"] = {"asr_check": {"max_clips": 2}, "temporal_alignment": {"audio_clips": 1, "probes": 4}}
    (books / "thresholds.yaml").write_text(yaml.safe_dump(th))
    reg = yaml.safe_load((books / "regression.yaml").read_text())
    reg["suite"].update(
        {"chat": 4, "text_embeddings": 4, "image_embeddings": 4, "transcriptions": 1, "router_audio": 0}
    )
    (books / "regression.yaml").write_text(yaml.safe_dump(reg))
    if not correlate:  # every alert group its own incident (correlation has its own tests)
        grading = yaml.safe_load((books / "grading.yaml").read_text())
        grading["correlation"]["rules"] = []
        (books / "grading.yaml").write_text(yaml.safe_dump(grading, allow_unicode=True))
    return books
