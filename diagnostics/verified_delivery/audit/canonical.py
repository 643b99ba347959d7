"""The canonical JSON form every digest of the audit bundle is computed over.

A digest must not depend on how a file happened to be formatted, and a verifier in another
language must be able to reproduce it. So the canonical form of a JSON value is the JSON
Canonicalization Scheme, RFC 8785 (JCS), computed by the ``rfc8785`` package:

- object keys sorted by their UTF-16 code units, no whitespace anywhere (``{"a":1,"b":[true,null]}``);
- strings as UTF-8 (``"上海"``, not ``"\\u4e0a\\u6d77"``), escaping only what JSON requires
  (``"``, ``\\``, ``\\b \\f \\n \\r \\t``, other control characters as lower-case ``\\u00XX``);
- numbers as ECMAScript writes a double (``1e+30``, ``4.5``, ``0.002``, ``1e-7``, ``1`` for
  ``1.0``); integers only within ±(2^53 − 1) (I-JSON); NaN and infinities are refused, as are lone
  surrogates (not Unicode): each a ValueError;
- no trailing newline.

Any JCS implementation (Go, Java, JavaScript, Rust, ...) gives the same bytes, which the tests check
against RFC 8785's own test vectors. :func:`jcs_safe` makes a value canonicalizable where it holds
what JCS refuses (big integers, NaN, lone surrogates), for the decision snapshot, which copies values
from the incident's artifacts.

Bundles of format v1 (``triage24.audit-bundle/v1``) were sealed over Python's ``json.dumps`` form
instead (:func:`legacy_canonical_json`: code-point key order, Python's float repr such as ``1e-07``
and ``1.0``): a verifier still accepts them, and says so; no new bundle uses it.

The bundle's ``manifest.json``, ``seal.json`` and ``decision_snapshot.json`` are stored as exactly
their canonical bytes, so ``sha256sum decision_snapshot.json`` is the snapshot digest, and any byte
changed in them (even whitespace) is visible to the verifier.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import rfc8785

_CHUNK = 1 << 20
#: I-JSON's (RFC 7493) exact integer range, which JCS keeps to.
MAX_SAFE_INTEGER = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) bytes of a JSON-like value; ValueError for what JCS refuses."""
    return rfc8785.dumps(value)


def legacy_canonical_json(value: Any) -> bytes:
    """The canonical form of format-v1 bundles (Python's ``json.dumps``: sorted by code point, compact,
    UTF-8, a lone surrogate as its ``\\uXXXX`` escape); only to verify bundles sealed with it."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # backslashreplace turns a lone surrogate into "\udxxx", which inside a JSON string is its escape
    return text.encode("utf-8", "backslashreplace")


def _replace_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (a valid pair is already one code point)."""
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


def jcs_safe(value: Any) -> Any:
    """``value`` with what JCS refuses written as strings: an integer beyond ±(2^53 − 1) as its
    decimal digits (as I-JSON advises), NaN and infinities as ``"NaN"``/``"Infinity"``/
    ``"-Infinity"`` (the tokens Python's json writes), a lone surrogate as U+FFFD."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, str):
        return _replace_surrogates(value)
    if isinstance(value, dict):
        return {_replace_surrogates(str(k)): jcs_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jcs_safe(v) for v in value]
    return value


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size in bytes of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
