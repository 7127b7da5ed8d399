"""Dialogs and the helpers the bot uses to run them."""

from __future__ import annotations

from botbuilder.core import StatePropertyAccessor, TurnContext
from botbuilder.dialogs import Dialog, DialogContext, DialogSet, DialogTurnResult, DialogTurnStatus

from bot.dialogs.feedback_dialog import FEEDBACK_DIALOG_ID, FeedbackDialog

__all__ = ["FEEDBACK_DIALOG_ID", "FeedbackDialog", "create_dialog_context", "run_dialog"]


async def create_dialog_context(
    dialog: Dialog, turn_context: TurnContext, accessor: StatePropertyAccessor
) -> DialogContext:
    """A dialog context over the dialog stack stored through `accessor`, able to run `dialog`."""
    dialog_set = DialogSet(accessor)
    dialog_set.add(dialog)
    return await dialog_set.create_context(turn_context)


async def run_dialog(dialog: Dialog, turn_context: TurnContext, accessor: StatePropertyAccessor) -> DialogTurnResult:
    """Continue the active dialog, or begin `dialog` when none is active."""
    dialog_context = await create_dialog_context(dialog, turn_context, accessor)
    result = await dialog_context.continue_dialog()
    if result.status == DialogTurnStatus.Empty:
        result = await dialog_context.begin_dialog(dialog.id)
    return result
