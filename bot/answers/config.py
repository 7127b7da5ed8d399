"""Which language model answers (if any), read from the environment and validated at start-up.

Azure OpenAI: `AZURE_OPENAI_ENDPOINT` + `AZURE_OPENAI_DEPLOYMENT`, with `AZURE_OPENAI_API_KEY` or, without a key,
Microsoft Entra ID tokens of the bot's managed identity (`AZURE_OPENAI_CLIENT_ID` names a user-assigned one).
Any OpenAI-compatible server: `OPENAI_BASE_URL` + `OPENAI_API_KEY` + `OPENAI_MODEL`. Neither: no model, and the bot
answers from its knowledge base alone, as it always did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bot.envparse import ConfigError, parse_bool, parse_number
from bot.vocabulary import PROVIDER_AZURE_OPENAI, PROVIDER_OPENAI

PROVIDER_AZURE = PROVIDER_AZURE_OPENAI
# The Azure OpenAI data-plane API version the bot asks for by default (generally available, chat completions with
# stream_options.include_usage).
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# The scope of Entra ID tokens for Azure OpenAI (Cognitive Services).
AZURE_TOKEN_SCOPE = "https://cognitiveservices.azure.com/.default"
# Channels such as Teams and Direct Line give up on a bot's HTTP answer after 15 s; an answer not ready this long
# after the question is sent proactively instead (bot/answers/turn.py).
CHANNEL_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class ModelSettings:
    provider: str  # PROVIDER_OPENAI or PROVIDER_AZURE
    model: str  # OPENAI_MODEL, or the Azure deployment name (Azure routes by deployment)
    base_url: str = ""  # OPENAI_BASE_URL
    azure_endpoint: str = ""
    api_version: str = DEFAULT_AZURE_API_VERSION
    api_key: str = field(default="", repr=False)
    managed_identity_client_id: str = ""  # Azure without a key: "" = system-assigned identity
    timeout_seconds: float = 60.0
    proactive_after_seconds: float = 10.0
    history_messages: int = 6
    max_output_tokens: int = 400
    max_pending_answers: int = 32
    capture_content: bool = False

    @property
    def uses_managed_identity(self) -> bool:
        return self.provider == PROVIDER_AZURE and not self.api_key

    @property
    def server(self) -> tuple[str, int | None]:
        """server.address and server.port of the model endpoint (span attributes of the GenAI conventions)."""
        parts = urlsplit(self.azure_endpoint or self.base_url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
        return parts.hostname or "", port

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ModelSettings | None:
        azure_endpoint = parse_model_url(env, "AZURE_OPENAI_ENDPOINT")
        base_url = parse_model_url(env, "OPENAI_BASE_URL")
        model = env.get("OPENAI_MODEL", "").strip()
        deployment = env.get("AZURE_OPENAI_DEPLOYMENT", "").strip()
        if azure_endpoint and base_url:
            raise ConfigError("OPENAI_BASE_URL", "set either AZURE_OPENAI_ENDPOINT or OPENAI_BASE_URL, not both")
        if not azure_endpoint and not base_url:
            if model:
                raise ConfigError("OPENAI_BASE_URL", "is required when OPENAI_MODEL is set")
            if deployment:
                raise ConfigError("AZURE_OPENAI_ENDPOINT", "is required when AZURE_OPENAI_DEPLOYMENT is set")
            return None
        common = {
            "timeout_seconds": parse_number(env, "BOT_MODEL_TIMEOUT_SECONDS", 60.0, 1.0, 600.0),
            "proactive_after_seconds": parse_number(
                env, "BOT_MODEL_PROACTIVE_AFTER_SECONDS", 10.0, 0.1, CHANNEL_TIMEOUT_SECONDS - 1
            ),
            "history_messages": int(parse_number(env, "BOT_MODEL_HISTORY_MESSAGES", 6, 0, 50)),
            "max_output_tokens": int(parse_number(env, "BOT_MODEL_MAX_OUTPUT_TOKENS", 400, 1, 100_000)),
            "max_pending_answers": int(parse_number(env, "BOT_MODEL_MAX_PENDING_ANSWERS", 32, 1, 10_000)),
            "capture_content": parse_bool(env, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", False),
        }
        if azure_endpoint:
            if not deployment:
                raise ConfigError("AZURE_OPENAI_DEPLOYMENT", "is required when AZURE_OPENAI_ENDPOINT is set")
            return cls(
                provider=PROVIDER_AZURE,
                model=deployment,
                azure_endpoint=azure_endpoint,
                api_version=env.get("AZURE_OPENAI_API_VERSION", "").strip() or DEFAULT_AZURE_API_VERSION,
                api_key=env.get("AZURE_OPENAI_API_KEY", "").strip(),
                managed_identity_client_id=env.get("AZURE_OPENAI_CLIENT_ID", "").strip(),
                **common,  # type: ignore[arg-type]
            )
        api_key = env.get("OPENAI_API_KEY", "").strip()
        if not api_key:
            raise ConfigError("OPENAI_API_KEY", "is required when OPENAI_BASE_URL is set")
        if not model:
            raise ConfigError("OPENAI_MODEL", "is required when OPENAI_BASE_URL is set")
        return cls(provider=PROVIDER_OPENAI, model=model, base_url=base_url, api_key=api_key, **common)  # type: ignore[arg-type]


def parse_model_url(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"expected an http(s) URL, got {raw!r}")
    return raw.rstrip("/")
