"""Workaround: msrest rebuilds its retry status list quadratically for every client it creates.

Defect (msrest 0.7.1 under botbuilder 4.17.1): `ClientRetryPolicy` computes `[i for i in range(999) if i not in
safe_codes]` against a ~500-item *list* for every client it creates, and botbuilder creates clients twice per turn;
that comprehension was most of a turn's CPU.
Why this way: turning `safe_codes` into a frozenset gives the same policy (the same `status_forcelist`), only cheaply.
Tests that fail without it:
- tests/test_compat.py::test_creating_the_adapter_makes_msrest_retry_policies_cheap_without_changing_them
"""

from __future__ import annotations

from msrest.universal_http.requests import ClientRetryPolicy


def patch_msrest_retry_policy() -> None:
    if not isinstance(ClientRetryPolicy.safe_codes, frozenset):
        ClientRetryPolicy.safe_codes = frozenset(ClientRetryPolicy.safe_codes)  # type: ignore[assignment]
