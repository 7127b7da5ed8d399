"""The bot's dialogs; each is started by a route in bot/routes.py (`dialog_route`)."""

from __future__ import annotations

from bot.dialogs.feedback_dialog import FEEDBACK_DIALOG_ID, FeedbackDialog

__all__ = ["FEEDBACK_DIALOG_ID", "FeedbackDialog"]
