"""A three-step waterfall that asks the user for a 1-5 rating and an optional comment."""

from __future__ import annotations

import re

from botbuilder.core import BotTelemetryClient, MessageFactory, NullTelemetryClient, UserState
from botbuilder.dialogs import ComponentDialog, Dialog, DialogTurnResult, WaterfallDialog, WaterfallStepContext
from botbuilder.dialogs.prompts import PromptOptions, PromptValidatorContext, TextPrompt
from botbuilder.schema import ActionTypes, Activity, CardAction

from bot.state import FEEDBACK_PROFILE_PROPERTY, FeedbackProfile
from bot.vocabulary import TURN_STATE_RATING

FEEDBACK_DIALOG_ID = "FeedbackDialog"
FEEDBACK_WATERFALL_ID = "FeedbackWaterfall"
RATING_PROMPT_ID = "FeedbackRatingPrompt"
COMMENT_PROMPT_ID = "FeedbackCommentPrompt"

RATING_PROMPT = "How would you rate me, from 1 (poor) to 5 (great)?"
RATING_RETRY_PROMPT = "Please answer with a whole number from 1 to 5, for example `4`."
COMMENT_PROMPT = "Thanks! Any comment you'd like to add? Type `skip` or `no` to leave none."
NO_COMMENT_ANSWERS = frozenset({"skip", "no", "none", "no thanks", "nope", "n"})

_RATING = re.compile(r"\s*([1-5])\s*[.!]?\s*")


def _with_choices(text: str, choices: list[str]) -> Activity:
    """The prompt with its answers as suggested actions: one tap in Web Chat or Teams, typing still works."""
    actions = [CardAction(type=ActionTypes.im_back, title=choice, value=choice) for choice in choices]
    return MessageFactory.suggested_actions(actions, text)


RATINGS = ["1", "2", "3", "4", "5"]


def parse_rating(text: str | None) -> int | None:
    """The rating in `text` if it is a bare whole number from 1 to 5, else None."""
    match = _RATING.fullmatch(text or "")
    return int(match.group(1)) if match else None


def is_no_comment(text: str | None) -> bool:
    cleaned = (text or "").strip().strip(".!").strip().lower()
    return not cleaned or cleaned in NO_COMMENT_ANSWERS


async def _validate_rating(prompt_context: PromptValidatorContext) -> bool:
    return bool(prompt_context.recognized.succeeded) and parse_rating(prompt_context.recognized.value) is not None


class FeedbackDialog(ComponentDialog):
    """Asks for a rating and an optional comment, then records them in user state."""

    def __init__(self, user_state: UserState, telemetry_client: BotTelemetryClient | None = None) -> None:
        super().__init__(FEEDBACK_DIALOG_ID)
        self._profile = user_state.create_property(FEEDBACK_PROFILE_PROPERTY)
        self.add_dialog(
            WaterfallDialog(FEEDBACK_WATERFALL_ID, [self.ask_rating_step, self.ask_comment_step, self.finish_step])
        )
        self.add_dialog(TextPrompt(RATING_PROMPT_ID, _validate_rating))
        self.add_dialog(TextPrompt(COMMENT_PROMPT_ID))
        self.initial_dialog_id = FEEDBACK_WATERFALL_ID
        self.telemetry_client = telemetry_client

    # botbuilder's ComponentDialog keeps the client to itself, so the waterfall would never emit its
    # WaterfallStart/Step/Complete/Cancel events; hand the client down to every inner dialog.
    @property
    def telemetry_client(self) -> BotTelemetryClient:
        return self._telemetry_client

    @telemetry_client.setter
    def telemetry_client(self, value: BotTelemetryClient | None) -> None:
        self._telemetry_client = value if value is not None else NullTelemetryClient()
        self._dialogs.telemetry_client = self._telemetry_client

    def add_dialog(self, dialog: Dialog) -> FeedbackDialog:
        super().add_dialog(dialog)
        dialog.telemetry_client = self._telemetry_client
        return self

    async def ask_rating_step(self, step: WaterfallStepContext) -> DialogTurnResult:
        options = PromptOptions(
            prompt=_with_choices(RATING_PROMPT, RATINGS), retry_prompt=_with_choices(RATING_RETRY_PROMPT, RATINGS)
        )
        return await step.prompt(RATING_PROMPT_ID, options)

    async def ask_comment_step(self, step: WaterfallStepContext) -> DialogTurnResult:
        step.values["rating"] = parse_rating(step.result)
        return await step.prompt(COMMENT_PROMPT_ID, PromptOptions(prompt=_with_choices(COMMENT_PROMPT, ["skip"])))

    async def finish_step(self, step: WaterfallStepContext) -> DialogTurnResult:
        rating: int = step.values["rating"]
        has_comment = not is_no_comment(step.result)
        profile = FeedbackProfile.from_dict(await self._profile.get(step.context, dict))
        profile.record(rating, has_comment)
        await self._profile.set(step.context, profile.to_dict())
        thanks = f"Thank you for your feedback! You rated me {rating}/5"
        thanks += " and your comment was noted." if has_comment else "."
        await step.context.send_activity(MessageFactory.text(thanks))
        # For the answer engine, which records the rating as an evaluation of the answer before the survey.
        step.context.turn_state[TURN_STATE_RATING] = {"rating": rating, "has_comment": has_comment}
        return await step.end_dialog({"rating": rating, "has_comment": has_comment})
