"""The llm module: ``POST /v1/chat``, retrieval over canned customer-service answers (no generation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import APIRouter

from testbed.serving.config import MODEL_KEYS
from testbed.serving.payloads import ChatBody, ServiceError

if TYPE_CHECKING:
    from testbed.serving.core import Service

#: The llm module's knowledge: canned customer-service answers, retrieved by question similarity.
FAQ: tuple[tuple[str, str], ...] = (
    ("Is this product in stock?", "Most shapes are in stock; the product page shows live availability."),
    ("Where is my order?", "You can track your order under Account > Orders; tracking updates hourly."),
    (
        "How do I return an item?",
        "Returns are free within 30 days: start one under Account > Orders > Return.",
    ),
    (
        "When will I get my refund?",
        "Refunds reach your card 3 to 5 business days after we receive the return.",
    ),
    ("How much does shipping cost?", "Shipping is free over $50; below that it is a flat $4.99."),
    (
        "How long does delivery take?",
        "Standard delivery takes 2 to 4 business days; express arrives next day.",
    ),
    (
        "What is the price of this item?",
        "Prices are on each product page; small shapes start at $3, large at $6.",
    ),
    ("Do you have any discounts?", "Subscribe to the newsletter for 10% off your first order."),
    ("Can I change my order?", "Orders can be changed within one hour of purchase under Account > Orders."),
    ("Which payment methods do you accept?", "We accept major credit cards, PayPal and Alipay."),
    ("I want to talk to a human.", "Connecting you to a support agent; the average wait is under 2 minutes."),
    (
        "What colours do the shapes come in?",
        "Red, green, blue, yellow, purple and orange, in small and large.",
    ),
)
FAQ_MIN_SCORE = 0.35
FAQ_FALLBACK = "Sorry, I don't know that one yet. A support agent can help: say 'talk to a human'."


class FaqChat:
    """Answers a message with the FAQ entry whose question is most similar (MiniLM cosine)."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self._faq_emb: np.ndarray | None = None  # embedded on first use (the model loads in background)

    async def answer(self, message: str, channel: str) -> dict[str, Any]:
        embeddings = self.svc.embeddings
        if self._faq_emb is None:
            self._faq_emb = await embeddings.minilm([q for q, _ in FAQ], channel, drift=False)
        q = await embeddings.minilm([message or " "], channel, drift=False)
        sims = self._faq_emb @ q[0]
        best = int(np.argmax(sims))
        score = float(sims[best])
        fallback = score < FAQ_MIN_SCORE or not message.strip()
        return {
            "answer": FAQ_FALLBACK if fallback else FAQ[best][1],
            "matched_question": None if fallback else FAQ[best][0],
            "score": round(score, 4),
            "fallback": fallback,
            "model": f"faq-retrieval ({MODEL_KEYS['minilm'][0]})",
        }


def chat_routes(svc: Service) -> APIRouter:
    """``POST /v1/chat``: ``{"message": ...}`` or OpenAI-style ``{"messages": [...]}`` (last user turn)."""
    routes = APIRouter()

    @routes.post("/v1/chat")
    async def chat(body: ChatBody) -> dict[str, Any]:
        message = body.message
        if message is None and body.messages:
            users = [m.get("content", "") for m in body.messages if m.get("role", "user") == "user"]
            message = users[-1] if users else ""
        if message is None:
            raise ServiceError(400, "chat needs 'message' or 'messages'")
        return svc.stamp("text", await svc.chat.answer(message, "text"))

    return routes
