"""The audit bundle's canonical JSON is RFC 8785 (JCS): the RFC's own test vectors, byte for byte."""

from __future__ import annotations

import json
import struct

import pytest

from diagnostics.verified_delivery.audit.canonical import (
    MAX_SAFE_INTEGER,
    canonical_json,
    jcs_safe,
    legacy_canonical_json,
)

# RFC 8785 section 3.2.2, the sample input (as JSON text, parsed as a verifier would) ...
RFC_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
# ... and section 3.2.4, its canonical form in UTF-8, as the RFC writes it in hexadecimal
RFC_OUTPUT_HEX = """
7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72 75 65 2c 66 61 6c 73 65 5d 2c 22 6e
75 6d 62 65 72 73 22 3a 5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31 65 2b 33 30
2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37 5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24
5c 75 30 30 30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d
"""


def test_the_rfc_sample_canonicalizes_to_the_rfc_bytes() -> None:
    expected = bytes.fromhex(RFC_OUTPUT_HEX)
    assert expected == (
        b'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(RFC_INPUT)) == expected


def test_properties_are_sorted_by_utf16_code_units() -> None:
    # RFC 8785 section 3.2.3: the emoji (surrogates D83D DE00) sorts before U+FB33, unlike code points
    value = json.loads(
        r"""{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"}"""
    )
    order = [v for _, v in json.loads(canonical_json(value), object_pairs_hook=list)]
    assert order == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    legacy = [v for _, v in json.loads(legacy_canonical_json(value), object_pairs_hook=list)]
    assert legacy[-2:] == ["Hebrew Letter Dalet With Dagesh", "Emoji: Grinning Face"]  # code points: not JCS


@pytest.mark.parametrize(
    ("ieee_hex", "expected"),
    [  # RFC 8785 appendix B: IEEE 754 doubles and their canonical text
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),  # minus zero
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_numbers_are_written_as_ecmascript_does(ieee_hex: str, expected: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(ieee_hex))
    assert canonical_json(number) == expected.encode()


@pytest.mark.parametrize("ieee_hex", ["7fffffffffffffff", "7ff0000000000000"])  # NaN, Infinity
def test_nan_and_infinity_are_refused(ieee_hex: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(ieee_hex))
    with pytest.raises(ValueError):
        canonical_json([number])


def test_where_the_v1_form_differed() -> None:
    value = {"a": [1e-07, 1.0, 1e16, 4.50]}
    assert canonical_json(value) == b'{"a":[1e-7,1,10000000000000000,4.5]}'
    assert legacy_canonical_json(value) == b'{"a":[1e-07,1.0,1e+16,4.5]}'
    assert legacy_canonical_json({"s": "\ud800"}) == b'{"s":"\\ud800"}'  # v1 kept a lone surrogate


def test_jcs_safe_writes_what_jcs_refuses_as_strings() -> None:
    value = {
        "big": 2**64,
        "edge": MAX_SAFE_INTEGER,
        "neg": -(2**53),
        "nan": float("nan"),
        "inf": [float("inf"), float("-inf")],
        "s\ud800": "x\udcff y",
        "ok": [1.5, True, None, "上海"],
    }
    assert jcs_safe(value) == {
        "big": "18446744073709551616",
        "edge": MAX_SAFE_INTEGER,
        "neg": "-9007199254740992",
        "nan": "NaN",
        "inf": ["Infinity", "-Infinity"],
        "s\ufffd": "x\ufffd y",
        "ok": [1.5, True, None, "上海"],
    }
    assert json.loads(canonical_json(jcs_safe(value)))["big"] == "18446744073709551616"
