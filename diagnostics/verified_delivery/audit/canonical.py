"""The canonical JSON form every digest of the audit bundle is computed over.

A digest must not depend on how a file happened to be formatted, and a verifier in another
language must be able to reproduce it. The canonical form of a JSON value is::

    json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    encoded as UTF-8; a lone surrogate (not representable in UTF-8) as its \\uXXXX escape

that is:

- object keys sorted by code point, no whitespace anywhere (``{"a":1,"b":[true,null]}``);
- strings as UTF-8 (``"上海"``, not ``"\\u4e0a\\u6d77"``), escaping only what JSON requires
  (``"``, ``\\``, control characters as ``\\n``/``\\uXXXX``);
- integers in decimal, floats in Python's shortest round-trip form (``0.1``, ``1e-07``,
  ``412.5``); NaN and infinities are refused (they are not JSON);
- no trailing newline.

The bundle's ``manifest.json``, ``seal.json`` and ``decision_snapshot.json`` are stored as exactly
their canonical bytes, so ``sha256sum decision_snapshot.json`` is the snapshot digest, and any byte
changed in them (even whitespace) is visible to the verifier.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON-like value (see the module docstring); ValueError for NaN."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # backslashreplace turns a lone surrogate into "\udxxx", which inside a JSON string is its escape
    return text.encode("utf-8", "backslashreplace")


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
