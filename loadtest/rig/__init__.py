"""The helpers the tests and the load test share, each written once: free ports, child processes, stand-ins for the
services the bot talks to, the /metrics tally by catalog name, Bot Framework activities, progress lines.

Not shipped: the wheel holds `bot` and `telemetry` only (pyproject.toml; tests/test_rig.py proves it), so nothing
here may be imported by either. It imports nothing from `tests`, which may import it.

- `ports`: free 127.0.0.1 ports.
- `processes`: child processes with a log file, stopped SIGTERM-then-SIGKILL within a deadline.
- `polling`: deadline-bounded waiting, the only way anything here waits.
- `serving`: an aiohttp runner served until SIGTERM/SIGINT (the benchmark's child processes).
- `background`: an aiohttp server in a thread of its own, the base of the stand-ins.
- `ingestion`: the Application Insights ingestion endpoint, recording or counting envelopes.
- `channel`: the Bot Framework channel connector the bot replies to.
- `exposition`: series of a Prometheus /metrics text, summed by catalog name.
- `activities`: activities as a channel posts them, with the one bot account.
- `progress`: the `[tag] message` lines the load test and the benchmark print as they go.
"""
