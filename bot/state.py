"""Data the bot keeps in conversation and user state."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DIALOG_STATE_PROPERTY = "DialogState"
FEEDBACK_PROFILE_PROPERTY = "FeedbackProfile"


@dataclass
class FeedbackProfile:
    """What the user told the feedback dialog; the comment text itself is never kept."""

    count: int = 0
    last_rating: int | None = None
    last_had_comment: bool = False

    def record(self, rating: int, has_comment: bool) -> None:
        self.count += 1
        self.last_rating = rating
        self.last_had_comment = has_comment

    # Stored as a plain dict so that any botbuilder storage (memory, blob, Cosmos DB) can serialize it.
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FeedbackProfile:
        if not isinstance(data, dict):
            return cls()
        rating = data.get("last_rating")
        return cls(
            count=int(data.get("count", 0)),
            last_rating=int(rating) if rating is not None else None,
            last_had_comment=bool(data.get("last_had_comment", False)),
        )
