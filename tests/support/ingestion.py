"""The Application Insights ingestion stand-in: loadtest/rig/ingestion.py, re-exported for the tests."""

from loadtest.rig.ingestion import (
    AZURE_SDK_OFFLINE_ENV,
    INSTRUMENTATION_KEY,
    TRACK_PATH,
    Envelope,
    IngestionStandIn,
    OtherRequest,
    envelope_base_type,
    parse_envelopes,
)

__all__ = [
    "AZURE_SDK_OFFLINE_ENV",
    "INSTRUMENTATION_KEY",
    "TRACK_PATH",
    "Envelope",
    "IngestionStandIn",
    "OtherRequest",
    "envelope_base_type",
    "parse_envelopes",
]
