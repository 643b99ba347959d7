"""PII masking for log samples, reports and the audit bundle.

``mask_pii(text)`` replaces personal data with typed placeholders:

- e-mail address -> ``[email]``: ``local@domain.tld``;
- international phone -> ``[phone]``: ``+`` country code, then 7–15 digits in groups
  (``+1-202-555-0143``, ``+86 138 1234 5678``);
- Chinese resident ID -> ``[id_card]``: 17 digits + digit/X, a plausible birth date (1900–2099)
  and a valid GB 11643 check character;
- payment card -> ``[card]``: 13–19 digits (single spaces or dashes between groups allowed),
  first digit 2–6, Luhn-valid;
- Chinese mobile -> ``[phone]``: ``1[3-9]`` + 9 digits;
- IPv4 address -> ``[ip]``: four octets 0–255 (``ip=False`` keeps them).

Numbers are only masked when they stand alone (not inside a longer run of ASCII letters or digits),
so hex trace ids and other identifiers survive. Check digits are validated on purpose: a random
18-digit or 16-digit number (an order id, a counter) is kept with probability 10/11 resp. 9/10, so
the evidence stays readable; a card number must also start with 2–6 (the issuer ranges in use), so
epoch-millisecond timestamps (``17…``) are never taken for cards.

The functions are pure and idempotent (placeholders contain nothing that a pattern matches), and
never raise on any ``str``. ``mask_record`` walks JSON-like values (dicts, lists) for log records.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_KEEP_KEYS",
    "PII_KINDS",
    "PLACEHOLDER",
    "SECRET_KEYS",
    "cn_id_check_char",
    "cn_id_valid",
    "luhn_valid",
    "mask_pii",
    "mask_pii_with",
    "mask_record",
]

_CN_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_CHECK = "10X98765432"

# ASCII letters and digits glue a number to its neighbours (hex ids, tokens); anything else
# (spaces, '=', quotes, CJK characters) separates it.
_B = r"(?<![0-9A-Za-z])"
_E = r"(?![0-9A-Za-z])"

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_INTL_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?)(?:[ .-]?\d{1,5}){1,5}" + _E)
_CN_ID = re.compile(_B + r"[1-9]\d{16}[\dXx]" + _E)
# Digit groups separated by single spaces or dashes; the callback picks the Luhn-valid span.
_DIGIT_RUN = re.compile(_B + r"\d+(?:[ -]\d+)*" + _E)
_CN_MOBILE = re.compile(_B + r"1[3-9]\d{9}" + _E)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(r"(?<![\w.])" + rf"{_OCTET}(?:\.{_OCTET}){{3}}" + r"(?!\.?\d)(?!\d)")
_GROUP_SPLIT = re.compile(r"([ -])")

#: record keys whose values are structure, not free text: never masked
DEFAULT_KEEP_KEYS = frozenset(
    {
        "ts",
        "@timestamp",
        "timestamp",
        "level",
        "trace_id",
        "span_id",
        "parent_span_id",
        "trace.id",
        "span.id",
        "parent.id",
        "version",
        "service",
        "channel",
        "status",
        "latency_ms",
    }
)
#: record keys whose whole value is replaced by ``[redacted]`` (secrets, not PII, but same treatment)
SECRET_KEYS = frozenset(
    {"password", "passwd", "secret", "token", "api_key", "apikey", "authorization", "cookie", "set-cookie"}
)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits (separators ignored) passes the Luhn check; needs ≥ 2 digits."""
    nums = [ord(c) - 48 for c in digits if "0" <= c <= "9"]
    if len(nums) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(nums)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def cn_id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a Chinese resident ID (GB 11643-1999)."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("need the first 17 digits of the ID")
    return _CN_CHECK[sum(int(c) * w for c, w in zip(first17, _CN_WEIGHTS, strict=True)) % 11]


def cn_id_valid(number: str) -> bool:
    """An 18-character resident ID with a plausible birth date (1900–2099) and a valid check char."""
    if len(number) != 18 or not number[:17].isascii() or not number[:17].isdigit():
        return False
    year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    if not (1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    return cn_id_check_char(number[:17]) == number[17].upper()


def _card_span(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _mask_digit_run(m: re.Match[str]) -> str:
    """Mask the Luhn-valid card numbers in a run of digit groups (``4111 1111 1111 1111 2``).

    Tries spans of whole groups, longest first from each start, so a card followed or preceded by
    unrelated numbers is still found; a span that is not a card is left as it was.
    """
    return _digit_run_with(m.group(0), lambda _span: "[card]")


def _mask_cn_id(m: re.Match[str]) -> str:
    return "[id_card]" if cn_id_valid(m.group(0)) else m.group(0)


def _mask_intl_phone(m: re.Match[str]) -> str:
    n = sum(c.isdigit() for c in m.group(0))
    return "[phone]" if 7 <= n <= 15 else m.group(0)


def mask_pii(text: str, *, ip: bool = True) -> str:
    """``text`` with e-mails, phone numbers, resident IDs, card numbers (and IPv4 addresses) masked."""
    if not text:
        return text
    # Cheap pre-checks skip the regexes for the common case of a log line without any candidate.
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    if "+" in text:
        text = _INTL_PHONE.sub(_mask_intl_phone, text)
    if any(c.isdigit() for c in text):
        text = _CN_ID.sub(_mask_cn_id, text)
        text = _DIGIT_RUN.sub(_mask_digit_run, text)
        text = _CN_MOBILE.sub("[phone]", text)
        if ip and "." in text:
            text = _IPV4.sub("[ip]", text)
    return text


def mask_record(value: Any, *, keep_keys: frozenset[str] = DEFAULT_KEEP_KEYS, ip: bool = True) -> Any:
    """A copy of a JSON-like value with every string masked (numbers too, where they look like PII).

    Values under ``keep_keys`` (timestamps, trace ids, versions …) are kept as they are; values
    under a secret-looking key (``SECRET_KEYS``) become ``[redacted]`` whatever they are.
    """
    if isinstance(value, str):
        return mask_pii(value, ip=ip)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        # a phone number or card stored as a JSON number
        text = str(value)
        masked = mask_pii(text, ip=ip)
        return value if masked == text else masked
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            key = str(k)
            if key.lower() in SECRET_KEYS:
                out[k] = "[redacted]"
            elif key in keep_keys:
                out[k] = v
            else:
                out[k] = mask_record(v, keep_keys=keep_keys, ip=ip)
        return out
    if isinstance(value, list | tuple):
        return [mask_record(v, keep_keys=keep_keys, ip=ip) for v in value]
    return value


# --- per-kind replacement (the audit bundle's PII policy) ---------------------------------------------

#: the kinds :func:`mask_pii_with` tells apart, in the order the patterns run
PII_KINDS: tuple[str, ...] = ("email", "phone", "id_card", "card", "cn_mobile", "ip")
#: the typed placeholder :func:`mask_pii` writes for each kind (a Chinese mobile is a ``[phone]``)
PLACEHOLDER: dict[str, str] = {
    "email": "email",
    "phone": "phone",
    "id_card": "id_card",
    "card": "card",
    "cn_mobile": "phone",
    "ip": "ip",
}

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _letters(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 26)
        out = _LETTERS[r] + out
        if n == 0:
            return out


def _sentinels(text: str) -> tuple[str, str]:
    """Two private-use characters that do not occur in ``text`` (a text cannot hold all 6400)."""
    free = (chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
    return next(free), next(free)


def _digit_run_with(run: str, card: Callable[[str], str]) -> str:
    """:func:`_mask_digit_run` with the replacement of each card span chosen by ``card``."""
    if len(run) < 13:
        return run
    parts = _GROUP_SPLIT.split(run)
    groups = parts[0::2]
    out: list[str] = []
    i = 0
    n = len(groups)
    while i < n:
        found = -1
        for j in range(n - 1, i - 1, -1):
            if _card_span("".join(groups[i : j + 1])):
                found = j
                break
        if found < 0:
            out.append(groups[i])
            if i < n - 1:
                out.append(parts[2 * i + 1])
            i += 1
        else:
            out.append(card("".join(parts[2 * i : 2 * found + 1])))
            if found < n - 1:
                out.append(parts[2 * found + 1])
            i = found + 1
    return "".join(out)


def mask_pii_with(text: str, replace: Callable[[str, str], str], *, ip: bool = True) -> str:
    """``text`` with every PII match replaced by ``replace(kind, matched text)``.

    Finds exactly what :func:`mask_pii` finds (same patterns, same order, same check digits), but
    lets the caller choose the replacement per kind (``PII_KINDS``): the audit bundle's policy
    hashes some kinds so that equal values stay linkable. While the patterns run, each match stands
    as an inert token (two private-use characters around letters, which no pattern matches and which
    separate numbers the way ``[email]`` does); the replacements go in at the end, so a replacement
    that contains digits (a hash) is never taken for PII by a later pattern.
    ``mask_pii_with(t, lambda kind, _: f"[{PLACEHOLDER[kind]}]") == mask_pii(t)`` for every ``t``.
    """
    if not text or ("@" not in text and "+" not in text and not any(c.isdigit() for c in text)):
        return text  # no pattern can match (the same pre-checks as mask_pii)
    found: list[tuple[str, str]] = []
    left, right = _sentinels(text)

    def token(kind: str, value: str) -> str:
        found.append((kind, value))
        return f"{left}{_letters(len(found) - 1)}{right}"

    if "@" in text:
        text = _EMAIL.sub(lambda m: token("email", m.group(0)), text)
    if "+" in text:
        text = _INTL_PHONE.sub(
            lambda m: token("phone", m.group(0)) if _mask_intl_phone(m) != m.group(0) else m.group(0), text
        )
    if any(c.isdigit() for c in text):
        text = _CN_ID.sub(
            lambda m: token("id_card", m.group(0)) if _mask_cn_id(m) != m.group(0) else m.group(0), text
        )
        text = _DIGIT_RUN.sub(lambda m: _digit_run_with(m.group(0), lambda v: token("card", v)), text)
        text = _CN_MOBILE.sub(lambda m: token("cn_mobile", m.group(0)), text)
        if ip and "." in text:
            text = _IPV4.sub(lambda m: token("ip", m.group(0)), text)
    if not found:
        return text
    tokens = re.compile(re.escape(left) + "([a-z]+)" + re.escape(right))

    def put_back(m: re.Match[str]) -> str:
        index = 0
        for c in m.group(1):
            index = index * 26 + _LETTERS.index(c)
        return replace(*found[index])

    return tokens.sub(put_back, text)
