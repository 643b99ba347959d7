"""PII masking: the testbed's leak line, check digits, false positives, and properties (hypothesis)."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.pii import cn_id_check_char, cn_id_valid, luhn_valid, mask_pii, mask_record
from testbed.faults import luhn_complete, make_pii

# Real-world reference numbers: test card numbers published by the networks, and the ID number
# from the GB 11643-1999 standard's worked example.
VISA_TEST = "4111111111111111"
MASTERCARD_TEST = "5555555555554444"
AMEX_TEST = "378282246310005"
GB11643_EXAMPLE = "11010519491231002X"


def test_luhn_known_numbers() -> None:
    assert luhn_valid(VISA_TEST)
    assert luhn_valid(MASTERCARD_TEST)
    assert luhn_valid(AMEX_TEST)
    assert luhn_valid("4111 1111 1111 1111")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("1")


def test_cn_id_check_char_matches_the_standard_example() -> None:
    assert cn_id_check_char(GB11643_EXAMPLE[:17]) == "X"
    assert cn_id_valid(GB11643_EXAMPLE)
    assert cn_id_valid(GB11643_EXAMPLE.lower())
    assert not cn_id_valid("110105194912310021")  # wrong check char
    assert not cn_id_valid("110105194913310027")  # month 13
    with pytest.raises(ValueError):
        cn_id_check_char("12345")


@pytest.mark.parametrize("seed", range(50))
def test_testbed_pii_leak_line_is_fully_masked(seed: int) -> None:
    """The exact line the testbed writes under the pii_in_logs fault (testbed/serving/observe.py)."""
    sample = make_pii(random.Random(seed))
    line = f"request completed caller profile: {sample.as_text()}"
    masked = mask_pii(line)
    assert masked == (
        "request completed caller profile: phone=[phone] alt_phone=[phone] id_card=[id_card] "
        "email=[email] card=[card]"
    )
    for value in (sample.cn_phone, sample.intl_phone, sample.cn_id, sample.email, sample.card):
        assert value not in masked


def test_typed_placeholders() -> None:
    assert mask_pii("mail wang.wei12@mail.example.cn now") == "mail [email] now"
    assert mask_pii("call 13812345678.") == "call [phone]."
    assert mask_pii("手机13812345678，谢谢") == "手机[phone]，谢谢"
    assert mask_pii("alt +1-202-555-0143 or +86 138 1234 5678") == "alt [phone] or [phone]"
    assert mask_pii(f"id {GB11643_EXAMPLE}") == "id [id_card]"
    assert mask_pii("cards 4111 1111 1111 1111, 5555-5555-5555-4444 and 378282246310005") == (
        "cards [card], [card] and [card]"
    )
    assert mask_pii("from 10.1.2.3:8001") == "from [ip]:8001"
    assert mask_pii("from 10.1.2.3", ip=False) == "from 10.1.2.3"


def test_card_next_to_other_numbers_is_still_found() -> None:
    assert mask_pii(f"{VISA_TEST} 2 items") == "[card] 2 items"
    assert mask_pii(f"qty 7 {VISA_TEST}") == "qty 7 [card]"


def test_numbers_that_are_not_pii_stay() -> None:
    keep = [
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "took 1735732800123 ms since epoch",  # 13 digits, starts with 1: never a card
        "order 4111111111111112",  # Luhn-invalid
        "id 110105194912310021",  # wrong check char
        "version 1.2.3 at 2025-01-01T12:00:00.123Z latency_ms=412.5",
        "12345678901",  # 11 digits but 12… is not a mobile prefix
        "256.1.1.1 is not an address",
        "sha256 3f786850e387550fdab836ed7e6dc881de23001b",
    ]
    for text in keep:
        assert mask_pii(text) == text, text


def test_random_valid_ids_and_cards_are_masked_but_near_misses_are_not() -> None:
    rng = random.Random(7)
    for _ in range(200):
        birth = f"{rng.randint(1950, 2010)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        first17 = f"{rng.choice(['110105', '440305'])}{birth}{rng.randint(100, 999)}"
        good = first17 + cn_id_check_char(first17)
        bad = first17 + next(c for c in "0123456789X" if c != good[-1])
        assert mask_pii(f"id={good}") == "id=[id_card]"
        assert mask_pii(f"id={bad}") != "id=[id_card]"
        card = luhn_complete(rng.choice("3456") + "".join(rng.choice("0123456789") for _ in range(14)))
        assert mask_pii(f"card={card}") == "card=[card]"


def test_mask_record_walks_nested_values_and_keeps_structure() -> None:
    sample = make_pii(random.Random(3))
    caller = {"phone": sample.cn_phone, "card": int(sample.card), "email": sample.email}
    record: dict[str, object] = {
        "ts": "2025-01-01T12:00:00.123Z",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "status": 200,
        "message": f"request completed caller profile: {sample.as_text()}",
        "caller": caller,
        "headers": [{"authorization": "Bearer abc.def"}, "from 192.168.0.7"],
        "latency_ms": 12.5,
    }
    masked = mask_record(record)
    assert masked["ts"] == record["ts"] and masked["trace_id"] == record["trace_id"]
    assert masked["status"] == 200 and masked["latency_ms"] == 12.5
    assert masked["caller"] == {"phone": "[phone]", "card": "[card]", "email": "[email]"}
    assert masked["headers"] == [{"authorization": "[redacted]"}, "from [ip]"]
    text = repr(masked)
    for value in (sample.cn_phone, sample.intl_phone, sample.cn_id, sample.email, sample.card):
        assert value not in text
    assert caller["phone"] == sample.cn_phone  # the input is not modified


# --- properties ---------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\[(email|phone|id_card|card|ip)\]")


def _pii_token() -> st.SearchStrategy[str]:
    return st.builds(lambda seed: make_pii(random.Random(seed)).as_text(), st.integers(0, 10**6))


_texty = st.text(
    alphabet=st.sampled_from(list("0123456789 -+.@=:xX_abcAB/()[]\n手机")), max_size=80
) | st.text(max_size=80)
_mixed = st.lists(st.one_of(_texty, _pii_token()), max_size=6).map("".join)


@settings(max_examples=400, deadline=None)
@given(_mixed)
def test_masking_is_idempotent_and_never_raises(text: str) -> None:
    once = mask_pii(text)
    assert mask_pii(once) == once


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_pii_token(), st.sampled_from([" ", "\n", ", ", " | ", "；"])), min_size=1, max_size=4)
)
def test_generated_pii_never_survives(parts: list[tuple[str, str]]) -> None:
    text = "".join(p + sep for p, sep in parts)
    masked = mask_pii(text)
    assert not re.search(r"\d{7,}", masked.replace(" ", "")), masked
    assert "@" not in masked
    assert len(_PLACEHOLDER.findall(masked)) == 5 * len(parts)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_mask_record_never_raises(value: object) -> None:
    mask_record(value)
