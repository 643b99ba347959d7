"""testbed.faults: the catalogue's validation, the registry, the transforms and the PII generators."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from testbed import faults as F

EXPECTED_NAMES = {
    "embedding_dim_mismatch",
    "image_text_misalignment",
    "audio_timeout",
    "asr_degraded",
    "latency_spike",
    "error_burst",
    "cuda_oom",
    "router_degraded",
    "model_not_loaded",
    "embedding_drift",
    "pii_in_logs",
    "clock_skew",
}


def test_catalogue_is_the_public_list() -> None:
    assert set(F.FAULT_NAMES) == EXPECTED_NAMES
    for spec in F.FAULTS.values():
        assert spec.channels and set(spec.channels) <= set(F.CHANNELS)
        assert spec.magnitude_min <= spec.default_magnitude <= spec.magnitude_max
        assert spec.shows_in and spec.summary


def test_readme_documents_every_fault() -> None:
    from pathlib import Path

    readme = (Path(F.__file__).parent / "README.md").read_text(encoding="utf-8")
    for name in F.FAULT_NAMES:
        assert f"`{name}`" in readme, name


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"fault": "no_such_fault"}, "valid faults: embedding_dim_mismatch"),
        ({}, "valid faults"),
        ("cuda_oom", "JSON object"),
        ({"fault": "cuda_oom", "colour": "red"}, "valid fields"),
        ({"fault": "latency_spike", "channel": "video"}, "valid channels: text, image, audio, router"),
        ({"fault": "embedding_dim_mismatch", "channel": "audio"}, "valid channels: image"),
        ({"fault": "error_burst", "magnitude": 1.5}, "out of range"),
        ({"fault": "error_burst", "magnitude": "half"}, "must be a number"),
        ({"fault": "error_burst", "magnitude": True}, "must be a number"),
        ({"fault": "embedding_dim_mismatch", "magnitude": 12.5}, "integer"),
        ({"fault": "cuda_oom", "duration_s": 0}, "duration_s"),
        ({"fault": "cuda_oom", "duration_s": "long"}, "duration_s"),
        ({"fault": "clock_skew", "magnitude": float("nan")}, "out of range"),
    ],
)
def test_bad_requests_name_the_valid_choices(body: object, needle: str) -> None:
    with pytest.raises(F.FaultError) as err:
        F.validate_request(body)
    assert needle in str(err.value)


def test_unknown_name_lists_all_names() -> None:
    with pytest.raises(F.FaultError) as err:
        F.validate_request({"fault": "gpu_melted"})
    for name in EXPECTED_NAMES:
        assert name in str(err.value)


def test_defaults_and_channels() -> None:
    spec, channels, magnitude, duration = F.validate_request({"fault": "latency_spike"})
    assert channels == F.CHANNELS and magnitude == spec.default_magnitude and duration is None
    _, channels, magnitude, duration = F.validate_request(
        {"fault": "latency_spike", "channel": "image", "magnitude": 250, "duration_s": 5}
    )
    assert channels == ("image",) and magnitude == 250.0 and duration == 5.0
    _, channels, _, _ = F.validate_request({"fault": "model_not_loaded"})
    assert channels == ("image",)
    _, channels, magnitude, _ = F.validate_request({"fault": "clock_skew", "magnitude": -1500})
    assert magnitude == -1500.0 and channels == F.CHANNELS


def test_registry_replace_clear_and_expiry() -> None:
    now = [1000.0]
    reg = F.FaultRegistry(clock=lambda: now[0])
    reg.activate({"fault": "latency_spike", "channel": "text", "magnitude": 100})
    reg.activate({"fault": "latency_spike", "channel": "image", "magnitude": 200})  # replaces
    reg.activate({"fault": "cuda_oom", "duration_s": 10})
    assert [f.name for f in reg.active()] == ["latency_spike", "cuda_oom"]
    assert reg.get("latency_spike", "text") is None
    spike = reg.get("latency_spike", "image")
    assert spike is not None and spike.magnitude == 200
    now[0] += 9.9
    assert reg.get("cuda_oom") is not None
    now[0] += 0.2
    assert reg.get("cuda_oom") is None
    assert [f.name for f in reg.active()] == ["latency_spike"]
    assert reg.clear("latency_spike") == ["latency_spike"]
    assert reg.clear("latency_spike") == []
    reg.activate({"fault": "pii_in_logs"})
    reg.activate({"fault": "clock_skew"})
    assert sorted(reg.clear()) == ["clock_skew", "pii_in_logs"]
    assert reg.active() == []
    with pytest.raises(F.FaultError):
        reg.clear("nope")


def test_misalign_collapses_similarity_and_keeps_norm() -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((50, 128)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out = F.misalign(emb, 1.0)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert abs(float(np.mean(np.sum(out * emb, axis=1)))) < 0.2
    half = F.misalign(emb, 0.3)
    assert float(np.mean(np.sum(half * emb, axis=1))) > 0.8
    assert np.allclose(F.misalign(emb, 0.0), emb, atol=1e-6)


def test_project_dim_and_drift() -> None:
    emb = np.eye(4, 128, dtype=np.float32)
    assert F.project_dim(emb, 512).shape == (4, 512)
    assert F.project_dim(emb, 64).shape == (4, 64)
    assert F.drift_shift(0, 0.2) == pytest.approx(0.2)
    assert F.drift_shift(600, 0.2) == pytest.approx(2.2)
    assert F.drift_shift(1e6, 0.2) == 5.0
    small, big = F.drift(emb, 0.1), F.drift(emb, 2.0)
    assert np.mean(np.sum(small * emb, 1)) > np.mean(np.sum(big * emb, 1))
    # the drift direction is fixed: shifted vectors move towards each other
    assert np.mean(big @ big.T) > np.mean(small @ small.T)


def test_add_noise_reaches_the_snr() -> None:
    t = np.arange(32000) / 16000
    sig = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    for snr in (20.0, 0.0, -5.0):
        noisy = F.add_noise_snr(sig, snr, seed=1)
        noise = noisy - sig
        measured = 10 * np.log10(np.mean(sig**2) / np.mean(noise**2))
        assert measured == pytest.approx(snr, abs=1.0 if snr > -5 else 1.5)
    assert np.array_equal(F.add_noise_snr(np.zeros(10, np.float32), 0.0), np.zeros(10, np.float32))


def test_pii_generators_are_valid() -> None:
    # The checks are the PII masker's (diagnostics.pii), pinned to published examples in test_pii.py.
    from diagnostics.pii import cn_id_valid, luhn_valid

    rng = random.Random(5)
    for _ in range(200):
        s = F.make_pii(rng)
        assert re.fullmatch(r"1[3-9]\d{9}", s.cn_phone)
        assert cn_id_valid(s.cn_id)
        assert re.fullmatch(r"[\w.]+@[\w.]+\.\w+", s.email)
        assert len(s.card) == 16 and luhn_valid(s.card)
        assert s.cn_phone in s.as_text() and s.card in s.as_text()
