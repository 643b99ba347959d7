"""Intent classification of transcripts (and text queries).

A nearest-centroid classifier over sentence embeddings: each intent's centroid is the mean of the
(normalised) embeddings of its example utterances; a transcript gets the intent whose centroid is
most cosine-similar, and a confidence = softmax(similarities / temperature) of that intent. The
examples are the golden set's text queries when the golden set is available (``examples_from_golden``),
else the small built-in set below. The encoder is all-MiniLM-L6-v2 in the service; any function
``list[str] -> array[n, d]`` works (tests pass a simple one).

When no encoder is available (the model failed to load) ``KeywordIntentClassifier`` answers from
keyword rules with a coarser confidence (share of matched keywords, capped), so the audio channel
still labels intents — the service reports that module as degraded then.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Encoder = Callable[[list[str]], np.ndarray]

#: Built-in examples over the golden set's intents. They are combined with the golden set's typed
#: text queries (never its spoken sentences, which are what the classifier is checked on).
DEFAULT_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("do you have this item available", "stock_inquiry"),
    ("is the green one in stock right now", "stock_inquiry"),
    ("when will it be available again", "stock_inquiry"),
    ("i would like to return what i bought", "return_request"),
    ("how can i send back a product", "return_request"),
    ("has my package shipped yet", "order_status"),
    ("track my order please", "order_status"),
    ("when will my parcel arrive", "order_status"),
    ("stop my plan and cancel the membership", "cancellation"),
    ("i no longer want the subscription, cancel it", "cancellation"),
    ("i want my money back", "refund_request"),
    ("when do i receive the refund", "refund_request"),
    ("my credit card was declined", "payment_issue"),
    ("the checkout failed when i tried to pay", "payment_issue"),
    ("what are the delivery options and costs", "shipping_question"),
    ("how many days does delivery take", "shipping_question"),
    ("i need to talk to a human", "human_agent"),
    ("connect me to a support agent", "human_agent"),
)

#: Keyword rules for the fallback classifier: intent -> regular expressions (case-insensitive).
DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "stock_inquiry": (r"\bstock\b", r"\bavailab", r"有货", r"库存"),
    "return_request": (r"\breturn", r"\bsend (it|this) back", r"退货"),
    "order_status": (r"\border\b", r"\btrack", r"\bpackage\b", r"\barriv", r"订单", r"包裹"),
    "cancellation": (r"\bcancel", r"\bsubscription\b", r"取消", r"订阅"),
    "refund_request": (r"\brefund", r"money back", r"退款"),
    "payment_issue": (r"\bpayment\b", r"\bcharged\b", r"\bcard\b", r"\bpay\b", r"付款", r"支付"),
    "shipping_question": (r"\bshipping\b", r"\bship\b", r"\bdeliver", r"运费", r"发货"),
    "human_agent": (r"\bhuman\b", r"\bagent\b", r"\bperson\b", r"人工", r"客服"),
}


@dataclass
class IntentResult:
    label: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    method: str = "centroid"

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "method": self.method,
        }


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    return out


class CentroidIntentClassifier:
    """Nearest-centroid intent classifier over sentence embeddings."""

    def __init__(
        self, encoder: Encoder, examples: Iterable[tuple[str, str]], temperature: float = 0.05
    ) -> None:
        pairs = [(t, i) for t, i in examples if t and i]
        if not pairs:
            raise ValueError("no intent examples")
        self.temperature = temperature
        self.encoder = encoder
        self.labels: list[str] = sorted({i for _, i in pairs})
        emb = _normalize(encoder([t for t, _ in pairs]))
        cents = []
        for label in self.labels:
            rows = [k for k, (_, i) in enumerate(pairs) if i == label]
            cents.append(emb[rows].mean(axis=0))
        self.centroids = _normalize(np.stack(cents))

    def classify_embedding(self, embedding: np.ndarray) -> IntentResult:
        e = _normalize(np.asarray(embedding).reshape(1, -1))[0]
        sims = self.centroids @ e
        z = (sims - sims.max()) / self.temperature
        probs = np.exp(z) / np.exp(z).sum()
        best = int(np.argmax(sims))
        return IntentResult(
            label=self.labels[best],
            confidence=float(probs[best]),
            scores={label: float(s) for label, s in zip(self.labels, sims, strict=True)},
            method="centroid",
        )

    def classify(self, text: str) -> IntentResult:
        if not text.strip():
            return IntentResult(label="unknown", confidence=0.0, scores={}, method="centroid")
        return self.classify_embedding(self.encoder([text])[0])


class KeywordIntentClassifier:
    """Keyword rules: the intent with the most matching patterns; confidence = matches / (matches + 1)."""

    def __init__(self, keywords: dict[str, Sequence[str]] | None = None) -> None:
        rules = keywords or DEFAULT_KEYWORDS
        self.rules = {k: [re.compile(p, re.IGNORECASE) for p in v] for k, v in rules.items()}

    def classify(self, text: str) -> IntentResult:
        counts = {label: sum(1 for p in pats if p.search(text)) for label, pats in self.rules.items()}
        best = max(counts, key=lambda k: counts[k]) if counts else "unknown"
        n = counts.get(best, 0)
        if n == 0:
            return IntentResult("unknown", 0.0, {k: float(v) for k, v in counts.items()}, "keywords")
        return IntentResult(best, n / (n + 1.0), {k: float(v) for k, v in counts.items()}, "keywords")


def examples_from_golden(
    golden: Any, extra: Iterable[tuple[str, str]] = DEFAULT_EXAMPLES
) -> list[tuple[str, str]]:
    """(text, intent) pairs: the golden set's typed text queries (``golden.texts``: items with
    ``text`` and ``intent``) plus ``extra``, restricted to the golden set's intents when it lists them.
    """
    queries = getattr(golden, "texts", None)
    if queries is None and isinstance(golden, dict):
        queries = golden.get("texts")
    intents = getattr(golden, "intents", None)
    if intents is None and isinstance(golden, dict):
        intents = golden.get("intents")
    allowed = set(intents) if intents else None
    out: list[tuple[str, str]] = []
    for q in queries or []:
        text = q.get("text") if isinstance(q, dict) else getattr(q, "text", None)
        intent = q.get("intent") if isinstance(q, dict) else getattr(q, "intent", None)
        if isinstance(text, str) and isinstance(intent, str) and text and intent:
            out.append((text, intent))
    out.extend((t, i) for t, i in extra if allowed is None or i in allowed)
    return out
