"""When a reply the channel did not take is sent again: part of the channel-replies workaround (channel_replies.py).

Defect: msrest retried failed replies (with its `requests` retry policy); the pooled aiohttp sender that replaces it
must too, or a channel's passing 502 loses the user's answer.
Why this way: 429 (after its Retry-After, up to a cap), 502/503/504, timeouts and dropped connections are retried with
jittered exponential back-off while the turn's retry budget lasts; any other 4xx answer is final.
Tests that fail without it:
- tests/test_reply_retries.py::test_one_failed_reply_is_sent_again_and_the_user_gets_the_answer_once
- tests/test_reply_retries.py::test_waits_grow_with_jitter_and_honour_retry_after_up_to_the_cap
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Answers worth another attempt: rate limited, or a gateway in front of the channel failed. Any other 4xx is final.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class ReplyRetryPolicy:
    """How a reply the channel did not take is tried again.

    `budget_seconds` bounds the retrying of a whole turn (from its first reply): the waits and the retried attempts of
    all its replies, the apology of a failed turn included, end by then, so that the turn answers well within the
    15 s a channel waits for it. A first attempt keeps the reply timeout (BOT_REPLY_TIMEOUT_SECONDS); a retry gets what
    is left of the budget if that is less.
    """

    attempts: int = 4
    budget_seconds: float = 8.0
    base_delay_seconds: float = 0.25
    max_delay_seconds: float = 2.0
    max_retry_after_seconds: float = 5.0
    min_attempt_seconds: float = 0.5

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Wait before retry number `retry` (1, 2, ...): exponential, capped, with equal jitter (half fixed, half
        random) so that replies failed together do not come back together."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (retry - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def wait(self, retry: int, retry_after: float | None, rng: random.Random | None = None) -> float | None:
        """The wait before retry number `retry`, or None if the answer asks for a longer wait than the cap."""
        if retry_after is None:
            return self.backoff(retry, rng)
        if retry_after > self.max_retry_after_seconds:
            return None
        return retry_after + (rng or random).uniform(0, self.base_delay_seconds / 2)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delay-seconds or an HTTP-date, RFC 9110 10.2.3), else None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
