"""The bot's validated settings, read from the environment (and a .env file when `python -m bot` starts).

Telemetry reads its own settings from the same environment (telemetry/config.py); `python -m bot` reads both.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace

from bot.answers.config import ModelSettings
from bot.envparse import ConfigError, parse_bool, parse_count, parse_number, parse_port, whole_number
from bot.faults import FaultSettings

APP_TYPES = ("MultiTenant", "SingleTenant", "UserAssignedMSI")
MAX_WORKERS = 64


@dataclass(frozen=True)
class Settings:
    app_id: str = ""
    app_password: str = field(default="", repr=False)
    app_type: str = "MultiTenant"
    app_tenant_id: str = ""
    host: str = "127.0.0.1"
    port: int = 3978
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 8000
    reply_timeout_seconds: float = 15.0
    max_body_bytes: int = 256 * 1024
    max_concurrent_turns: int = 256
    idle_timeout_seconds: float = 15.0
    body_timeout_seconds: float = 10.0
    shutdown_timeout_seconds: float = 20.0
    metrics_bearer_token: str = field(default="", repr=False)
    metrics_basic_auth: str = field(default="", repr=False)
    tune_runtime: bool = True
    workers: int = 1
    worker_timeout_seconds: float = 10.0
    state_db: str = ""
    faults: FaultSettings = field(default_factory=FaultSettings)
    model: ModelSettings | None = None  # the optional language model (bot/answers); None: knowledge base only

    @property
    def auth_enabled(self) -> bool:
        return bool(self.app_id)

    def botbuilder_configuration(self) -> SimpleNamespace:
        """The attribute names botbuilder's ConfigurationBotFrameworkAuthentication reads.

        Only these four: any auth override key (issuer, OpenID URLs, OAuth URL, ...) makes botbuilder pick a
        different authentication class that rejects credential-less Emulator requests.
        """
        return SimpleNamespace(
            APP_ID=self.app_id,
            APP_PASSWORD=self.app_password,
            APP_TYPE=self.app_type,
            APP_TENANTID=self.app_tenant_id,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        app_id = env.get("MicrosoftAppId", "").strip()
        app_type = env.get("MicrosoftAppType", "").strip() or "MultiTenant"
        matching = [name for name in APP_TYPES if name.lower() == app_type.lower()]
        if not matching:
            raise ConfigError("MicrosoftAppType", f"expected one of {', '.join(APP_TYPES)}, got {app_type!r}")
        app_type = matching[0]
        if app_id:
            try:
                uuid.UUID(app_id)
            except ValueError:
                raise ConfigError(
                    "MicrosoftAppId", f"expected an application (client) id GUID, got {app_id!r}"
                ) from None
        password = env.get("MicrosoftAppPassword", "")
        tenant = env.get("MicrosoftAppTenantId", "").strip()
        if app_id and app_type != "UserAssignedMSI" and not password:
            raise ConfigError("MicrosoftAppPassword", "is required when MicrosoftAppId is set")
        if app_id and app_type != "MultiTenant" and not tenant:
            raise ConfigError("MicrosoftAppTenantId", f"is required when MicrosoftAppType is {app_type}")
        if not app_id and password:
            raise ConfigError("MicrosoftAppId", "is empty but MicrosoftAppPassword is set")
        return cls(
            app_id=app_id,
            app_password=password,
            app_type=app_type,
            app_tenant_id=tenant,
            host=env.get("BOT_HOST", "").strip() or "127.0.0.1",
            port=parse_port(env, "PORT", 3978),
            metrics_host=env.get("BOT_METRICS_HOST", "").strip() or "127.0.0.1",
            metrics_port=parse_port(env, "BOT_METRICS_PORT", 8000),
            reply_timeout_seconds=parse_number(env, "BOT_REPLY_TIMEOUT_SECONDS", 15.0, 0.1, 300.0),
            max_body_bytes=int(parse_number(env, "BOT_MAX_BODY_BYTES", 256 * 1024, 1024, 64 * 1024 * 1024)),
            max_concurrent_turns=int(parse_number(env, "BOT_MAX_CONCURRENT_TURNS", 256, 1, 100_000)),
            idle_timeout_seconds=parse_number(env, "BOT_IDLE_TIMEOUT_SECONDS", 15.0, 0.5, 3600.0),
            body_timeout_seconds=parse_number(env, "BOT_BODY_TIMEOUT_SECONDS", 10.0, 0.1, 600.0),
            shutdown_timeout_seconds=parse_number(env, "BOT_SHUTDOWN_TIMEOUT_SECONDS", 20.0, 0.0, 600.0),
            metrics_bearer_token=env.get("BOT_METRICS_BEARER_TOKEN", "").strip(),
            metrics_basic_auth=_basic_auth(env),
            tune_runtime=parse_bool(env, "BOT_TUNE_RUNTIME", True),
            workers=parse_count(env, "BOT_WORKERS", 1, 1, MAX_WORKERS),
            worker_timeout_seconds=parse_number(env, "BOT_WORKER_TIMEOUT_SECONDS", 10.0, 2.0, 600.0),
            state_db=_state_db(env),
            faults=FaultSettings(
                error_ratio=parse_number(env, "BOT_FAULT_ERROR_RATIO", 0.0, 0.0, 1.0),
                delay_ratio=parse_number(env, "BOT_FAULT_DELAY_RATIO", 0.0, 0.0, 1.0),
                delay_seconds=parse_number(env, "BOT_FAULT_DELAY_SECONDS", 0.0, 0.0, 60.0),
            ),
            model=ModelSettings.from_env(env),
        )


def _state_db(env: Mapping[str, str]) -> str:
    value = env.get("BOT_STATE_DB", "").strip()
    if value and not os.path.isdir(os.path.dirname(os.path.abspath(value))):
        raise ConfigError("BOT_STATE_DB", f"the directory of {value!r} does not exist")
    return value


def _basic_auth(env: Mapping[str, str]) -> str:
    value = env.get("BOT_METRICS_BASIC_AUTH", "").strip()
    if value and (":" not in value or not value.split(":", 1)[0] or not value.split(":", 1)[1]):
        raise ConfigError("BOT_METRICS_BASIC_AUTH", "expected user:password")
    return value


__all__ = ["APP_TYPES", "MAX_WORKERS", "ConfigError", "Settings", "parse_count", "whole_number"]
