"""Settings and TelemetryConfig read from plain mappings: defaults, what they accept, and what they refuse."""

from __future__ import annotations

import logging

import pytest

from bot.settings import Settings
from telemetry.config import ConfigError, TelemetryConfig

APP_ID = "5f0c3a4e-2b1d-4c6e-9a8b-7d6e5f4a3b2c"
TENANT_ID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CONNECTION_STRING = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"


# --- defaults ------------------------------------------------------------------------------------------------------


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.port == 3978
    assert settings.host == "127.0.0.1"
    assert settings.metrics_port == 8000
    assert settings.metrics_host == "127.0.0.1"
    assert settings.auth_enabled is False
    assert (settings.app_id, settings.app_password, settings.app_tenant_id) == ("", "", "")
    assert settings.app_type == "MultiTenant"


def test_telemetry_defaults() -> None:
    config = TelemetryConfig.from_env({})
    assert config.service_name == "otel-chatbot"
    assert (config.sampler, config.sampler_ratio) == ("microsoft.rate_limited", 100.0)
    assert config.log_personal_information is False  # message text is not exported unless opted in
    assert config.connection_string is None
    assert config.otlp_endpoint is None
    assert config.log_level == logging.INFO
    assert config.storage_directory is None
    assert config.hash_key is None


def test_bot_and_telemetry_settings_are_read_from_the_same_mapping_each_their_own() -> None:
    environ = {"OTEL_SERVICE_NAME": "chat-a", "BOT_LOG_PERSONAL_INFORMATION": "true", "PORT": "4000"}
    assert Settings.from_env(environ).port == 4000
    config = TelemetryConfig.from_env(environ)
    assert config.service_name == "chat-a"
    assert config.log_personal_information is True


# --- bad values ----------------------------------------------------------------------------------------------------

SETTINGS_ERRORS = [
    pytest.param({"PORT": "abc"}, "PORT", id="PORT-not-a-number"),
    pytest.param({"PORT": "70000"}, "PORT", id="PORT-out-of-range"),
    pytest.param({"PORT": "\u00b2"}, "PORT", id="PORT-superscript-digit"),  # str.isdigit() alone accepts it
    pytest.param({"PORT": "\u0663"}, "PORT", id="PORT-non-ascii-digit"),
    pytest.param({"BOT_METRICS_PORT": "-1"}, "BOT_METRICS_PORT", id="BOT_METRICS_PORT-negative"),
    pytest.param({"BOT_IDLE_TIMEOUT_SECONDS": "0"}, "BOT_IDLE_TIMEOUT_SECONDS", id="BOT_IDLE_TIMEOUT_SECONDS-zero"),
    pytest.param({"BOT_BODY_TIMEOUT_SECONDS": "x"}, "BOT_BODY_TIMEOUT_SECONDS", id="BOT_BODY_TIMEOUT_SECONDS-text"),
    pytest.param({"MicrosoftAppType": "Bogus"}, "MicrosoftAppType", id="MicrosoftAppType-unknown"),
    pytest.param(
        {"MicrosoftAppId": "not-a-guid", "MicrosoftAppPassword": "secret"}, "MicrosoftAppId", id="app-id-not-a-guid"
    ),
    pytest.param({"MicrosoftAppId": APP_ID}, "MicrosoftAppPassword", id="app-id-without-password"),
    pytest.param(
        {"MicrosoftAppId": APP_ID, "MicrosoftAppPassword": "secret", "MicrosoftAppType": "SingleTenant"},
        "MicrosoftAppTenantId",
        id="single-tenant-without-tenant",
    ),
    pytest.param({"MicrosoftAppPassword": "secret"}, "MicrosoftAppId", id="password-without-app-id"),
    pytest.param({"BOT_REPLY_TIMEOUT_SECONDS": "0"}, "BOT_REPLY_TIMEOUT_SECONDS", id="reply-timeout-zero"),
]

TELEMETRY_ERRORS = [
    pytest.param(
        {"BOT_TELEMETRY_RETRY_INTERVAL_SECONDS": "0"}, "BOT_TELEMETRY_RETRY_INTERVAL_SECONDS", id="retry-interval-zero"
    ),
    pytest.param(
        {"BOT_TELEMETRY_RETRY_INTERVAL_SECONDS": "soon"},
        "BOT_TELEMETRY_RETRY_INTERVAL_SECONDS",
        id="retry-interval-not-a-number",
    ),
    pytest.param(
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": "IngestionEndpoint=https://example.invalid/"},
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        id="connection-string-without-instrumentation-key",
    ),
    pytest.param(
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=abc;IngestionEndpoint=ftp://example.invalid/"},
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        id="connection-string-with-non-http-ingestion-endpoint",
    ),
    pytest.param(
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": "garbage"},
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        id="connection-string-garbage",
    ),
    pytest.param(
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=abc"},
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        id="connection-string-key-not-a-guid",
    ),
    pytest.param(
        # The SDK would ignore the misspelt key and send everything to Microsoft's public endpoint.
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": f"{CONNECTION_STRING};IngestionEndpont=https://example.invalid/"},
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        id="connection-string-unknown-key",
    ),
    pytest.param({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER", id="sampler-unknown"),
    pytest.param(
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
        "OTEL_TRACES_SAMPLER_ARG",
        id="sampler-arg-above-one",
    ),
    pytest.param({"OTEL_TRACES_SAMPLER_ARG": "x"}, "OTEL_TRACES_SAMPLER_ARG", id="sampler-arg-not-a-number"),
    pytest.param(
        {"OTEL_TRACES_SAMPLER": "microsoft.rate_limited", "OTEL_TRACES_SAMPLER_ARG": "-1"},
        "OTEL_TRACES_SAMPLER_ARG",
        id="traces-per-second-negative",
    ),
    pytest.param({"OTEL_RESOURCE_ATTRIBUTES": "novalue"}, "OTEL_RESOURCE_ATTRIBUTES", id="resource-attribute-no-value"),
    pytest.param(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://x"}, "OTEL_EXPORTER_OTLP_ENDPOINT", id="otlp-endpoint-not-http"
    ),
    pytest.param(
        {"BOT_LOG_PERSONAL_INFORMATION": "maybe"}, "BOT_LOG_PERSONAL_INFORMATION", id="personal-information-not-bool"
    ),
    pytest.param({"BOT_LOG_LEVEL": "LOUD"}, "BOT_LOG_LEVEL", id="log-level-unknown"),
]


def _assert_names(error: ConfigError, variable: str) -> None:
    assert error.variable == variable
    assert variable in str(error)


@pytest.mark.parametrize(("environ", "variable"), SETTINGS_ERRORS)
def test_settings_refuse_a_bad_value_and_name_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    _assert_names(caught.value, variable)


@pytest.mark.parametrize(("environ", "variable"), TELEMETRY_ERRORS)
def test_telemetry_config_refuses_a_bad_value_and_names_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TelemetryConfig.from_env(environ)
    _assert_names(caught.value, variable)


def test_a_connection_string_with_spaces_around_the_separators_is_read_as_meant() -> None:
    # The SDK reads "IngestionEndpoint " (with the space) as an unknown key and would fall back to the public endpoint.
    spaced = " InstrumentationKey = 00000000-0000-0000-0000-000000000000 ; IngestionEndpoint = http://127.0.0.1:9/ ;"
    config = TelemetryConfig.from_env({"APPLICATIONINSIGHTS_CONNECTION_STRING": spaced})
    expected = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
    assert config.connection_string == expected


def test_a_refused_value_is_shown_without_the_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"MicrosoftAppPassword": "hunter2-very-secret"})
    assert "hunter2-very-secret" not in str(caught.value)


# --- good values ---------------------------------------------------------------------------------------------------


def test_resource_attributes_set_environment_and_instance_id() -> None:
    config = TelemetryConfig.from_env(
        {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging, service.instance.id=bot-7,team=chat%20ops"}
    )
    assert config.environment == "staging"
    assert config.service_instance_id == "bot-7"
    assert config.resource_attributes["team"] == "chat ops"  # values may be percent-encoded


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes"}, "from-attributes", id="attributes"),
        pytest.param(
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attributes", "OTEL_SERVICE_NAME": "from-variable"},
            "from-variable",
            id="OTEL_SERVICE_NAME-wins",
        ),
        pytest.param({"OTEL_SERVICE_NAME": "  "}, "otel-chatbot", id="blank-means-default"),
    ],
)
def test_service_name(environ: dict[str, str], expected: str) -> None:
    assert TelemetryConfig.from_env(environ).service_name == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("multitenant", "MultiTenant"),
        ("SINGLETENANT", "SingleTenant"),
        ("userassignedmsi", "UserAssignedMSI"),
        (" SingleTenant ", "SingleTenant"),
    ],
)
def test_app_type_is_case_insensitive(given: str, expected: str) -> None:
    environ = {"MicrosoftAppId": APP_ID, "MicrosoftAppPassword": "secret", "MicrosoftAppTenantId": TENANT_ID}
    settings = Settings.from_env({**environ, "MicrosoftAppType": given})
    assert settings.app_type == expected
    assert settings.auth_enabled is True


def test_user_assigned_msi_needs_no_password() -> None:
    settings = Settings.from_env(
        {"MicrosoftAppId": APP_ID, "MicrosoftAppType": "UserAssignedMSI", "MicrosoftAppTenantId": TENANT_ID}
    )
    assert settings.app_type == "UserAssignedMSI"
    assert settings.app_password == ""


def test_good_values_are_read() -> None:
    environ = {
        "PORT": "0",
        "BOT_METRICS_PORT": "65535",
        "BOT_HOST": "0.0.0.0",
        "BOT_REPLY_TIMEOUT_SECONDS": "2.5",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION_STRING,
        "OTEL_TRACES_SAMPLER": "ParentBased_TraceIdRatio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "BOT_LOG_PERSONAL_INFORMATION": "yes",
        "BOT_LOG_LEVEL": "debug",
        "BOT_TELEMETRY_HASH_KEY": "k",
        "BOT_TELEMETRY_STORAGE_DIRECTORY": "/var/tmp/ai",
    }
    settings = Settings.from_env(environ)
    assert (settings.port, settings.metrics_port, settings.host) == (0, 65535, "0.0.0.0")
    assert settings.reply_timeout_seconds == 2.5
    config = TelemetryConfig.from_env(environ)
    assert config.connection_string == CONNECTION_STRING
    assert (config.sampler, config.sampler_ratio) == ("parentbased_traceidratio", 0.25)
    assert config.otlp_endpoint == "http://127.0.0.1:4318"
    assert config.log_personal_information is True
    assert config.log_level == logging.DEBUG
    assert config.hash_key == b"k"
    assert config.storage_directory == "/var/tmp/ai"


def test_the_password_is_not_in_the_repr() -> None:
    settings = Settings.from_env({"MicrosoftAppId": APP_ID, "MicrosoftAppPassword": "hunter2-very-secret"})
    assert "hunter2-very-secret" not in repr(settings)


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="auth-off"),
        pytest.param(
            {
                "MicrosoftAppId": APP_ID,
                "MicrosoftAppPassword": "secret",
                "MicrosoftAppType": "singletenant",
                "MicrosoftAppTenantId": TENANT_ID,
            },
            id="single-tenant",
        ),
    ],
)
def test_the_botbuilder_configuration_has_exactly_the_four_credential_keys(environ: dict[str, str]) -> None:
    # botbuilder's ConfigurationBotFrameworkAuthentication looks for optional override attributes (channel service,
    # OAuth URL, issuers, OpenID metadata URLs, ...). If any of them is present it switches to a parameterised
    # authentication class that insists on credentials, and the Emulator's credential-less requests are refused.
    # So the object must carry the four credential attributes and nothing else.
    settings = Settings.from_env(environ)
    configuration = settings.botbuilder_configuration()
    assert vars(configuration) == {
        "APP_ID": settings.app_id,
        "APP_PASSWORD": settings.app_password,
        "APP_TYPE": settings.app_type,
        "APP_TENANTID": settings.app_tenant_id,
    }


@pytest.mark.parametrize(
    ("value", "client_id"),
    [
        ("Authorization=AAD;ClientId=6f1c9a52-0d1e-4f6b-9a57-3f2a8d4c1b11", "6f1c9a52-0d1e-4f6b-9a57-3f2a8d4c1b11"),
        ("Authorization=AAD", ""),
    ],
)
def test_entra_id_ingestion_is_read_from_the_authentication_string(value: str, client_id: str) -> None:
    config = TelemetryConfig.from_env({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": value})
    assert config.entra_client_id == client_id
    assert TelemetryConfig.from_env({}).entra_client_id is None


def test_a_bad_authentication_string_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        TelemetryConfig.from_env({"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=Basic"})


def test_the_rate_limited_sampler_takes_traces_per_second() -> None:
    limited = TelemetryConfig.from_env(
        {"OTEL_TRACES_SAMPLER": "microsoft.rate_limited", "OTEL_TRACES_SAMPLER_ARG": "250"}
    )
    assert (limited.sampler, limited.sampler_ratio) == ("microsoft.rate_limited", 250.0)
    default = TelemetryConfig.from_env({"OTEL_TRACES_SAMPLER": "microsoft.rate_limited"})
    assert default.sampler_ratio == 100.0
