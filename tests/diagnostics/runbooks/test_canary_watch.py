"""runbooks/canary_watch.yaml: the repo's file loads into the watch's parameters, every SLA bound is
a bucket of the testbed's histogram, and a mistake names the file, line and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diagnostics.canary_watch import REGISTRY, CountTestParams, build_watches, overall
from diagnostics.canary_watch.sequential import WatchResult, WatchStatus
from diagnostics.runbooks import RunbookError, load_runbooks
from diagnostics.runbooks.canary_watch import TEST_NAMES, load_canary_watch
from diagnostics.runbooks.schemas import Channel
from testbed.metrics import LATENCY_BUCKETS
from tests.conftest import REPO

FILE = REPO / "runbooks" / "canary_watch.yaml"


def test_the_repo_runbook_loads_with_its_documented_values() -> None:
    book = load_canary_watch(FILE)
    assert book.alpha == 0.005 and book.tolerance == 1.0 and book.min_events == 5 and book.look_every_s == 5
    assert book.tests == ["errors", "errors_5xx", "sla_slow"]
    assert set(book.channels) == set(Channel)  # the channels of thresholds.yaml's sla
    assert book.alpha_per_test() == pytest.approx(0.005 / 12)
    assert book.alpha_per_test(channels=1) == pytest.approx(0.005 / 3)
    testbed = book.channels_for("testbed")
    assert testbed[Channel.AUDIO].slow_above_ms == 6000 and testbed[Channel.TEXT].slow_above_ms == 200
    assert book.channels_for("elsewhere")[Channel.AUDIO].slow_above_ms == 350


def test_every_sla_bound_is_a_bucket_of_the_testbeds_histogram_and_the_sla_of_thresholds() -> None:
    book = load_canary_watch(FILE)
    thresholds = load_runbooks().thresholds
    for target in ("testbed", "other"):
        for channel, cfg in book.channels_for(target).items():
            assert cfg.slow_above_ms / 1000 in LATENCY_BUCKETS
            assert cfg.slow_above_ms == thresholds.sla_for(target, channel).latency.latency_ms


def test_the_registry_and_the_schema_name_the_same_tests() -> None:
    assert tuple(REGISTRY) == TEST_NAMES


def test_one_watch_per_channel_and_test_at_the_split_level() -> None:
    book = load_canary_watch(FILE)
    watches = build_watches(book, "testbed")
    assert len(watches) == 12
    assert watches[("audio", "sla_slow")].label == "slow (> 6000 ms)"
    assert watches[("text", "errors_5xx")].label == "5xx"
    assert watches[("text", "errors")].params == CountTestParams(alpha=0.005 / 12)
    assert build_watches(book)[("audio", "sla_slow")].label == "slow (> 350 ms)"


def _result(status: WatchStatus) -> WatchResult:
    return WatchResult(
        status=status,
        test="errors",
        channel="text",
        e_value=1.0,
        log_e=0.0,
        threshold=2400.0,
        alpha=1 / 2400,
        canary_events=0,
        canary_requests=0,
        stable_events=0,
        stable_requests=0,
        looks=0,
        paused_looks=0,
        reason="no canary series" if status is WatchStatus.PAUSED else None,
        evidence="-",
    )


def test_one_rejecting_test_rejects_the_look_and_only_all_paused_pauses_it() -> None:
    c, p, r = (_result(s) for s in (WatchStatus.CONTINUE, WatchStatus.PAUSED, WatchStatus.REJECT))
    assert overall([c, p, r]) is WatchStatus.REJECT
    assert overall([p, p]) is WatchStatus.PAUSED
    assert overall([c, p]) is WatchStatus.CONTINUE


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    path = tmp_path / "canary_watch.yaml"
    shutil.copy(FILE, path)
    return path


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("alpha: 0.005", "alpha: 0.7", ":8: alpha: Input should be less than 0.5"),
        ("alpha: 0.005 ", "alphas: 0.005 ", ":7: alpha: required field is missing"),
        ("tolerance: 1.0", "tolerance: 0.8", ":9: tolerance: Input should be greater than or equal to 1"),
        ("tests: [errors,", "tests: [p99,", "tests[0]: Input should be 'errors', 'errors_5xx' or 'sla_slow'"),
        (
            "errors_5xx, sla_slow]",
            "errors, sla_slow]",
            "tests lists errors more than once; list each test once",
        ),
        (
            "  text:   {slow_above_ms: 200}",
            "  video:  {slow_above_ms: 200}",
            "channels.video.[key]: Input should be 'text', 'image', 'audio' or 'router'",
        ),
        (
            "  image:  {slow_above_ms: 200}",
            "  image:  {slow_above_ms: 0}",
            "channels.image.slow_above_ms: Input should be greater than 0",
        ),
        (
            "grid_step: 0.02",
            "grid_step: 0.001",
            "9211 grid points (at most 5000); raise grid_step or lower max_ratio",
        ),
        (
            "      router: {slow_above_ms: 6000}",
            "      router: {slow_above_ms: 6000, le: 6}",
            ":29: target_overrides.testbed.channels.router.le: unknown field",
        ),
    ],
)
def test_a_mistake_names_the_file_line_and_field(copy: Path, old: str, new: str, words: str) -> None:
    text = copy.read_text()
    assert old in text, old
    copy.write_text(text.replace(old, new, 1))
    with pytest.raises(RunbookError) as exc:
        load_canary_watch(copy)
    assert str(copy) in str(exc.value) and words in str(exc.value), str(exc.value)


def test_an_override_for_a_channel_not_watched_is_refused(copy: Path) -> None:
    copy.write_text(copy.read_text().replace("  audio:  {slow_above_ms: 350}\n", "", 1))
    with pytest.raises(RunbookError) as exc:
        load_canary_watch(copy)
    assert (
        "target_overrides.testbed.channels: audio not watched; channels defines: image, router, text"
        in str(exc.value)
    )
