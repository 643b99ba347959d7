"""The PII policy (runbooks/pii.yaml) applied to text and JSON: same finder as mask_pii, hash or mask
per kind, keyed and salted hashes, JSON keys masked too, structure and ordinary numbers kept."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.pii import PLACEHOLDER, mask_pii, mask_pii_with
from diagnostics.runbooks.pii import PiiAction, PiiKind, PiiPolicy
from diagnostics.verified_delivery.audit import AuditKey, AuditKeyError, PiiMasker, apply_pii_policy
from testbed.faults import make_pii
from tests.diagnostics.verified_delivery.audit.conftest import KEY, POLICY

ALL_MASK = POLICY.model_copy(update={"kinds": {k: PiiAction.MASK for k in PiiKind}})
ALL_HASH = POLICY.model_copy(update={"kinds": {k: PiiAction.HASH for k in PiiKind}})
HASHED = re.compile(r"\[(email|phone|id_card|card|ip):([0-9a-f]{8})\]")


def _pii_token() -> st.SearchStrategy[str]:
    return st.builds(lambda seed: make_pii(random.Random(seed)).as_text(), st.integers(0, 10**6))


# the corpus of tests/diagnostics/test_pii.py: look-alike characters, arbitrary text, generated PII
_texty = st.text(
    alphabet=st.sampled_from(list("0123456789 -+.@=:xX_abcAB/()[]\n手机")), max_size=80
) | st.text(max_size=80)
_mixed = st.lists(st.one_of(_texty, _pii_token()), max_size=6).map("".join)


@settings(max_examples=400, deadline=None)
@given(_mixed)
def test_mask_pii_with_finds_exactly_what_mask_pii_finds(text: str) -> None:
    assert mask_pii_with(text, lambda kind, _: f"[{PLACEHOLDER[kind]}]") == mask_pii(text)
    assert PiiMasker(ALL_MASK, None).text(text) == mask_pii(text)


@settings(max_examples=200, deadline=None)
@given(_mixed)
def test_a_hash_is_never_taken_for_pii_by_a_later_pattern(text: str) -> None:
    """Hash tokens carry digits; they go in after every pattern ran, so the result has as many
    tokens as mask_pii has placeholders, and masking it again changes nothing but the hashed text."""
    hashed = PiiMasker(ALL_HASH, KEY).text(text)
    placeholders = re.findall(r"\[(?:email|phone|id_card|card|ip)\]", mask_pii(text))
    assert len(HASHED.findall(hashed)) == len(placeholders)
    assert HASHED.sub(lambda m: f"[{m.group(1)}]", hashed) == mask_pii(text)


def test_each_kind_gets_its_action() -> None:
    s = make_pii(random.Random(11))
    masker = PiiMasker(POLICY, KEY)  # the repo's policy: id_card and card masked, the rest hashed
    out = masker.text(f"{s.as_text()} from 10.1.2.3 手机{s.cn_phone}")
    assert "id_card=[id_card]" in out and "card=[card]" in out
    kinds = [m.group(1) for m in HASHED.finditer(out)]
    assert kinds == ["phone", "phone", "email", "ip", "phone"]
    for value in (s.cn_phone, s.intl_phone, s.cn_id, s.email, s.card, "10.1.2.3"):
        assert value not in out


def test_equal_values_link_and_different_values_do_not() -> None:
    masker = PiiMasker(POLICY, KEY)
    a = masker.text("mail Wang.Wei12@Mail.Example.cn")
    b = masker.text("again wang.wei12@mail.example.cn, other li.na3@example.com")
    token = HASHED.search(a)
    assert token is not None
    assert b.count(token.group(0)) == 1  # the same address in another case: the same token
    assert len(set(HASHED.findall(b))) == 2
    # the same phone number written two ways links too (digits only)
    assert masker.text("+1-202-555-0143") == masker.text("+1 202 555 0143")


def test_hashes_are_keyed_and_salted() -> None:
    text = "call 13812345678"
    base = PiiMasker(POLICY, KEY).text(text)
    other_key = PiiMasker(POLICY, AuditKey("another-key-of-enough-length-42")).text(text)
    salted = POLICY.model_copy(update={"hash": POLICY.hash.model_copy(update={"salt": "rotated-salt-2027"})})
    other_salt = PiiMasker(salted, KEY).text(text)
    assert len({base, other_key, other_salt}) == 3
    assert PiiMasker(POLICY, KEY).text(text) == base  # deterministic
    longer = POLICY.model_copy(update={"hash": POLICY.hash.model_copy(update={"length": 16})})
    assert re.fullmatch(r"call \[phone:[0-9a-f]{16}\]", PiiMasker(longer, KEY).text(text))


def test_hashing_without_a_key_is_refused_with_the_fix() -> None:
    with pytest.raises(AuditKeyError, match=r"pii.yaml hashes email.*set those kinds to mask"):
        PiiMasker(POLICY, None)
    assert PiiMasker(ALL_MASK, None).text("a@b.example.com") == "[email]"


def test_json_keys_are_masked_and_collisions_kept_apart() -> None:
    masked = apply_pii_policy(
        {"callers": {"13812345678": 2, "13987654321": 1, "alice@example.com": 4}}, ALL_MASK, None
    )
    assert masked == {"callers": {"[phone]": 2, "[phone]#2": 1, "[email]": 4}}


def test_structure_secrets_and_numbers_as_mask_record_treats_them() -> None:
    s = make_pii(random.Random(5))
    record = {
        "ts": "2026-12-01T08:56:30.001Z",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "expected_sha256": "1" * 64,  # a keep key of pii.yaml: even all digits stay
        "status": 200,
        "latency_ms": 412.5,
        "card": int(s.card),
        "authorization": "Bearer abc.def",
        "nested": [{"email": s.email}, True, None, 3],
    }
    out = PiiMasker(POLICY, KEY).value(record)
    assert {k: out[k] for k in ("ts", "trace_id", "expected_sha256", "status", "latency_ms")} == {
        k: record[k] for k in ("ts", "trace_id", "expected_sha256", "status", "latency_ms")
    }
    assert out["card"] == "[card]"
    assert out["authorization"] == "[redacted]"
    assert HASHED.fullmatch(out["nested"][0]["email"]) and out["nested"][1:] == [True, None, 3]
    assert record["card"] == int(s.card)  # the input is not modified


_epoch_ms = st.integers(1_500_000_000_000, 1_999_999_999_999)
_iso = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
)
_semver = st.tuples(*[st.integers(0, 999)] * 3).map(lambda t: ".".join(map(str, t)))
_latency = st.floats(0, 120_000, allow_nan=False).map(lambda f: round(f, 3))
_count = st.integers(0, 10**9)


@settings(max_examples=300, deadline=None)
@given(_epoch_ms, _iso, _semver, _latency, _count, st.integers(1, 65535))
def test_numbers_that_are_not_pii_are_kept(
    epoch_ms: int, iso: str, semver: str, latency: float, count: int, port: int
) -> None:
    """Timestamps (epoch ms, ISO), versions, latencies, counts and ports survive, in values and in
    free text, under the hashing policy."""
    masker = PiiMasker(POLICY, KEY)
    record = {
        "at_ms": epoch_ms,
        "started_at": iso,
        "model_version": semver,
        "p99_ms": latency,
        "requests": count,
        "window": [iso, epoch_ms],
    }
    assert masker.value(record) == record
    line = f"{iso} v{semver} took {latency} ms at {epoch_ms} after {count} requests on port {port}"
    assert masker.text(line) == line


def test_window_of_timestamps_in_a_real_shape_is_kept() -> None:
    start = datetime(2026, 12, 1, 8, 56, tzinfo=UTC)
    window = [(start + timedelta(seconds=i)).isoformat() for i in range(0, 900, 60)]
    assert PiiMasker(POLICY, KEY).value({"window": window}) == {"window": window}


def test_policy_model_lists_every_kind() -> None:
    assert isinstance(POLICY, PiiPolicy)
    assert set(POLICY.kinds) == set(PiiKind)
