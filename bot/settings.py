"""The bot's validated settings, read from the environment (and a .env file when `python -m bot` starts).

Telemetry reads its own settings from the same environment (telemetry/config.py); `python -m bot` reads both.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from urllib.parse import urlsplit

from bot.answers.config import ModelSettings
from bot.envparse import ConfigError, parse_bool, parse_count, parse_number, parse_port, whole_number
from bot.faults import FaultSettings
from bot.storage import STORE_BLOB, STORE_MEMORY, STORE_SQLITE, STORES

APP_TYPES = ("MultiTenant", "SingleTenant", "UserAssignedMSI")
MAX_WORKERS = 64
MEMORY_NOT_SHARED = "memory is private to one process; worker processes need sqlite or blob"


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
    state_store: str = "memory"
    blob_connection_string: str = field(default="", repr=False)
    blob_account_url: str = ""
    blob_container: str = "bot-state"
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
            **_state_store(env),
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


_CONTAINER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


def _state_store(env: Mapping[str, str]) -> dict[str, str]:
    """BOT_STATE_STORE and the blob settings; the store itself is built by bot.storage.build_storage."""
    store = env.get("BOT_STATE_STORE", "").strip().lower()
    state_db = env.get("BOT_STATE_DB", "").strip()
    several = parse_count(env, "BOT_WORKERS", 1, 1, MAX_WORKERS) > 1
    if not store:
        # Before this setting, BOT_STATE_DB (or worker processes) alone chose SQLite.
        store = STORE_SQLITE if state_db or several else STORE_MEMORY
    if store not in STORES:
        raise ConfigError("BOT_STATE_STORE", f"expected one of {', '.join(STORES)}, got {store!r}")
    if store == STORE_MEMORY and several:
        raise ConfigError("BOT_STATE_STORE", MEMORY_NOT_SHARED)
    connection_string = env.get("AZURE_STORAGE_CONNECTION_STRING", "").strip()
    account_url = env.get("BOT_STATE_BLOB_ACCOUNT_URL", "").strip().rstrip("/")
    container = env.get("BOT_STATE_BLOB_CONTAINER", "").strip() or "bot-state"
    if store == STORE_BLOB:
        if connection_string and account_url:
            raise ConfigError(
                "BOT_STATE_BLOB_ACCOUNT_URL", "set either it (managed identity) or AZURE_STORAGE_CONNECTION_STRING"
            )
        if not connection_string and not account_url:
            raise ConfigError(
                "AZURE_STORAGE_CONNECTION_STRING",
                "BOT_STATE_STORE=blob needs it (or BOT_STATE_BLOB_ACCOUNT_URL with a managed identity)",
            )
        if connection_string:
            pairs = [part.split("=", 1) for part in connection_string.split(";") if part.strip()]
            names = {pair[0].strip() for pair in pairs if len(pair) == 2}
            if len(names) != len(pairs) or not names & {"BlobEndpoint", "AccountName", "UseDevelopmentStorage"}:
                raise ConfigError(
                    "AZURE_STORAGE_CONNECTION_STRING",
                    "expected Name=value pairs separated by ';' with BlobEndpoint or AccountName",
                )
        if account_url:
            url = urlsplit(account_url)
            local = url.hostname in ("127.0.0.1", "localhost", "::1")
            if (url.scheme != "https" and not (url.scheme == "http" and local)) or not url.hostname:
                raise ConfigError(
                    "BOT_STATE_BLOB_ACCOUNT_URL",
                    f"expected https://<account>.blob.core.windows.net, got {account_url!r}",
                )
        if not _CONTAINER_NAME.fullmatch(container):
            raise ConfigError(
                "BOT_STATE_BLOB_CONTAINER",
                f"expected 3-63 lowercase letters, digits and single hyphens, got {container!r}",
            )
    return {
        "state_store": store,
        "blob_connection_string": connection_string,
        "blob_account_url": account_url,
        "blob_container": container,
    }


def _basic_auth(env: Mapping[str, str]) -> str:
    value = env.get("BOT_METRICS_BASIC_AUTH", "").strip()
    if value and (":" not in value or not value.split(":", 1)[0] or not value.split(":", 1)[1]):
        raise ConfigError("BOT_METRICS_BASIC_AUTH", "expected user:password")
    return value


__all__ = ["APP_TYPES", "MAX_WORKERS", "ConfigError", "Settings", "parse_count", "whole_number"]
