"""Reading settings from environment variables, with errors that name the variable. Shared by the bot's settings
(bot/settings.py) and telemetry's (telemetry/config.py); standard library only, so either may import it."""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(ValueError):
    """A setting has a value the program cannot use. `variable` names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def parse_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def parse_number(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g}, got {raw}")
    return value


def parse_port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or not 0 <= int(raw) <= 65535:
        raise ConfigError(name, f"expected a TCP port number 0-65535, got {raw!r}")
    return int(raw)


def whole_number(raw: str, low: int, high: int) -> int:
    """`raw` as a whole number from `low` to `high` (ASCII digits only), else ValueError saying so."""
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ValueError(f"expected a whole number from {low} to {high}, got {raw!r}")
    return int(raw)


def parse_count(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return whole_number(raw, low, high)
    except ValueError as error:
        raise ConfigError(name, str(error)) from None
