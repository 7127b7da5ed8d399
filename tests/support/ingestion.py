"""A local stand-in for the Application Insights ingestion endpoint (`POST /v2.1/track`).

It lives in loadtest.standins, which the load test uses to reconcile offline; re-exported here for the tests.
"""

from loadtest.standins import (
    INSTRUMENTATION_KEY,
    TRACK_PATH,
    Envelope,
    IngestionStandIn,
    OtherRequest,
    envelope_base_type,
    parse_envelopes,
)

__all__ = [
    "INSTRUMENTATION_KEY",
    "TRACK_PATH",
    "Envelope",
    "IngestionStandIn",
    "OtherRequest",
    "envelope_base_type",
    "parse_envelopes",
]
