"""Realistic synthetic events: ~20 skewed types, ~250-byte metadata with searchable words."""

from __future__ import annotations

import json
import random

# Ordered by frequency: weights fall off like Zipf's law (s = 1.2), so page.view is ~30%.
TYPES = [
    "page.view",
    "api.request",
    "session.heartbeat",
    "user.click",
    "search.query",
    "cart.add",
    "user.login",
    "user.logout",
    "cart.remove",
    "checkout.started",
    "checkout.completed",
    "payment.succeeded",
    "payment.failed",
    "email.sent",
    "email.opened",
    "signup.completed",
    "error.client",
    "error.server",
    "file.uploaded",
    "subscription.renewed",
]
TYPE_WEIGHTS = [1 / (rank**1.2) for rank in range(1, len(TYPES) + 1)]
CUM_WEIGHTS = [sum(TYPE_WEIGHTS[: i + 1]) for i in range(len(TYPES))]

COUNTRIES = ["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "ES", "NL", "SE", "PL"]
DEVICES = ["desktop", "mobile", "tablet", "bot"]

# Words are consonant-vowel syllables from these letters only, so the search words
# below (which use k, q, x, y, z) can never occur by chance.
_CONSONANTS = "bdfglmnprstv"
_VOWELS = "aeiou"
MATCH_WORD = "kumquat"  # planted in 1% of events
NO_MATCH_WORD = "zyxwvq"  # in no event


def _vocabulary(size: int = 2000, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.randint(2, 4)
        words.add("".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables)))
    return sorted(words)


VOCABULARY = _vocabulary()


def type_share(name: str) -> float:
    return TYPE_WEIGHTS[TYPES.index(name)] / sum(TYPE_WEIGHTS)


class EventFactory:
    """Makes event types and metadata; ``match_rate`` of the messages contain MATCH_WORD."""

    def __init__(self, seed: int = 1, match_rate: float = 0.01):
        self.rng = random.Random(seed)
        self.match_rate = match_rate

    def types(self, k: int) -> list[str]:
        return self.rng.choices(TYPES, cum_weights=CUM_WEIGHTS, k=k)

    def metadata(self) -> dict:
        rng, words = self.rng, VOCABULARY
        message = rng.choices(words, k=rng.randint(4, 6))
        if rng.random() < self.match_rate:
            message[rng.randrange(len(message))] = MATCH_WORD
        return {
            "user_id": f"u_{rng.randrange(200_000)}",
            "session_id": f"{rng.getrandbits(64):016x}",
            "path": f"/{rng.choice(words)}/{rng.choice(words)}/{rng.randrange(1000)}",
            "referrer": f"https://{rng.choice(words)}.example.com/{rng.choice(words)}",
            "country": rng.choice(COUNTRIES),
            "device": rng.choice(DEVICES),
            "duration_ms": rng.randrange(5, 5000),
            "amount": round(rng.uniform(1, 500), 2),
            "tags": rng.choices(words, k=2),
            "message": " ".join(message),
        }

    def event(self) -> dict:
        """One event as a client posts it (the server assigns id and received_at)."""
        return {"type": self.types(1)[0], "metadata": self.metadata()}

    def bodies(self, count: int) -> list[str]:
        """``count`` distinct single-event JSON bodies (~300 bytes each), one line each."""
        return [json.dumps(self.event(), separators=(",", ":")) for _ in range(count)]

    def batch_body(self, size: int) -> str:
        events = [self.event() for _ in range(size)]
        return json.dumps({"events": events}, separators=(",", ":"))
