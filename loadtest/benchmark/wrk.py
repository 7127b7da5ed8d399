"""The load generator: Debian's `wrk`, driven by a generated Lua script.

Every request is the same ~800-byte activity a channel would post, with its conversation, user and activity ids
varied: request n belongs to conversation n mod `conversations`, so no two requests in flight share a conversation
(the state of one conversation is never written by two turns at once) while the number of conversations, and with
it the bot's state, stays bounded. With a `rate`, requests are paced on a schedule (one slot every 1/rate s across
all connections) instead of being sent as fast as the answers come back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXPECT_REPLIES = "expectReplies"
CHANNEL = "channel"
TRANSPORTS = (EXPECT_REPLIES, CHANNEL)
DEFAULT_TEXT = "what can you do?"
DEFAULT_CHANNEL_ID = "webchat"
REQUEST_TIMEOUT_SECONDS = 30  # a turn not answered by then counts as failed (wrk's timeout error)
_CONVERSATION, _USER, _ACTIVITY = "@@CONVERSATION@@", "@@USER@@", "@@ACTIVITY@@"


def activity_template(transport: str, service_url: str, channel_id: str, text: str) -> dict[str, Any]:
    """The activity every request posts, shaped like Web Chat's through the Direct Line channel."""
    activity: dict[str, Any] = {
        "type": "message",
        "id": _ACTIVITY,
        "timestamp": "2025-01-01T12:00:00.000Z",
        "localTimestamp": "2025-01-01T13:00:00.000+01:00",
        "localTimezone": "Europe/Berlin",
        "serviceUrl": service_url,
        "channelId": channel_id,
        "from": {"id": _USER, "name": "Benchmark user", "role": "user"},
        "conversation": {"id": _CONVERSATION, "conversationType": "personal", "tenantId": str(uuid.UUID(int=7))},
        "recipient": {"id": "otel-chatbot@benchmark", "name": "otel-chatbot", "role": "bot"},
        "textFormat": "plain",
        "locale": "en-US",
        "text": text,
        "entities": [
            {
                "type": "ClientCapabilities",
                "requiresBotState": True,
                "supportsListening": True,
                "supportsTts": True,
            }
        ],
        "channelData": {"clientActivityID": "1735732800000abcdefghij", "clientTimestamp": "2025-01-01T12:00:00Z"},
    }
    if transport == EXPECT_REPLIES:
        activity["deliveryMode"] = EXPECT_REPLIES
    return activity


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for this ASCII text


def lua_script(template: dict[str, Any], path: str, result_file: Path, conversations: int, rate: float | None) -> str:
    body = json.dumps(template, separators=(",", ":"))
    pieces: list[str] = []
    rest = body
    order: list[str] = []
    while True:
        positions = [(rest.find(marker), marker) for marker in (_CONVERSATION, _USER, _ACTIVITY) if marker in rest]
        if not positions:
            break
        index, marker = min(positions)
        pieces.append(rest[:index])
        order.append(marker)
        rest = rest[index + len(marker) :]
    pieces.append(rest)
    values = {_CONVERSATION: '"conv-" .. c', _USER: '"user-" .. c', _ACTIVITY: '"act-" .. n'}
    concat = " .. ".join(
        part
        for index, piece in enumerate(pieces)
        for part in ([_lua_string(piece)] + ([values[order[index]]] if index < len(order) else []))
    )
    interval = 1.0 / rate if rate else 0.0
    return f"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} benchmark_timespec;
int clock_gettime(int clk_id, benchmark_timespec *tp);
]]
local clock = ffi.new("benchmark_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end
local conversations = {conversations}
local interval = {interval!r}
local headers = {{["Content-Type"] = "application/json; charset=utf-8"}}
local n = 0
local next_slot = 0
statuses = {{}}
bad_bodies = 0

request = function()
  n = n + 1
  local c = n % conversations
  return wrk.format("POST", {_lua_string(path)}, headers, {concat})
end

response = function(status, _, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 and not string.find(body, '"message"', 1, true) then
    bad_bodies = bad_bodies + 1
  end
end

if interval > 0 then
  delay = function()
    local t = now()
    if next_slot < t then next_slot = t end
    local wait = next_slot - t
    next_slot = next_slot + interval
    return math.floor(wait * 1000)
  end
end

local threads = {{}}
setup = function(thread) table.insert(threads, thread) end

done = function(summary, latency, requests)
  local merged, bad = {{}}, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do merged[status] = (merged[status] or 0) + count end
    bad = bad + thread:get("bad_bodies")
  end
  local parts = {{}}
  for status, count in pairs(merged) do table.insert(parts, string.format('"%d": %d', status, count)) end
  local e = summary.errors
  local out = assert(io.open({_lua_string(str(result_file))}, "w"))
  out:write(string.format(
    '{{"requests": %d, "duration_us": %d, "bytes": %d, "bad_bodies": %d, "statuses": {{%s}}, ' ..
    '"errors": {{"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}, ' ..
    '"latency_us": {{"mean": %.1f, "p50": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d, "max": %d}}}}',
    summary.requests, summary.duration, summary.bytes, bad, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9), latency.max))
  out:close()
end
"""


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    statuses: dict[int, int]
    errors: dict[str, int]
    bad_bodies: int
    latency_ms: dict[str, float]
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def ok(self, expected_status: int) -> int:
        """Requests answered with the expected status (and, for 200, a body holding a message)."""
        good = self.statuses.get(expected_status, 0)
        return good - self.bad_bodies if expected_status == 200 else good

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WrkResult:
        return cls(
            requests=int(data["requests"]),
            duration_s=int(data["duration_us"]) / 1e6,
            statuses={int(k): int(v) for k, v in data["statuses"].items()},
            errors={k: int(v) for k, v in data["errors"].items()},
            bad_bodies=int(data["bad_bodies"]),
            latency_ms={k: float(v) / 1000 for k, v in data["latency_us"].items()},
            raw=data,
        )


def find_wrk() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    executable = find_wrk()
    if executable is None:
        return "-"
    completed = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10, check=False)
    first = (completed.stdout or completed.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "-"


def wrk_command(
    wrk: str, url: str, script: Path, connections: int, seconds: float, cpus: Sequence[int] | None = None
) -> list[str]:
    timeout = REQUEST_TIMEOUT_SECONDS
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout}s",
        "-s",
        str(script),
    ]
    command.append(url)
    if cpus and shutil.which("taskset"):
        command = ["taskset", "-c", ",".join(str(cpu) for cpu in cpus), *command]
    return command


def run_wrk(
    url: str,
    transport: str,
    service_url: str,
    workdir: Path,
    *,
    connections: int,
    seconds: float,
    rate: float | None = None,
    conversations: int = 1024,
    channel_id: str = DEFAULT_CHANNEL_ID,
    text: str = DEFAULT_TEXT,
    cpus: Sequence[int] | None = None,
    wrk: str | None = None,
) -> WrkResult:
    """One wrk run against `url`; raises RuntimeError if wrk fails or writes no result."""
    executable = wrk or find_wrk()
    if executable is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    workdir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    script, result_file = workdir / f"wrk-{token}.lua", workdir / f"wrk-{token}.json"
    path = "/" + url.split("://", 1)[-1].split("/", 1)[-1]
    template = activity_template(transport, service_url, channel_id, text)
    script.write_text(lua_script(template, path, result_file, max(conversations, connections * 2), rate))
    command = wrk_command(executable, url, script, connections, seconds, cpus)
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False, env={**os.environ, "LANG": "C"}
    )
    try:
        if completed.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout}")
        return WrkResult.from_json(json.loads(result_file.read_text()))
    finally:
        script.unlink(missing_ok=True)
        result_file.unlink(missing_ok=True)


def activity_size(transport: str, channel_id: str = DEFAULT_CHANNEL_ID, text: str = DEFAULT_TEXT) -> int:
    """Bytes of one posted activity (ids filled in as the script fills them)."""
    template = activity_template(transport, "http://127.0.0.1:65535", channel_id, text)
    body = json.dumps(template, separators=(",", ":"))
    return len(body.replace(_CONVERSATION, "conv-512").replace(_USER, "user-512").replace(_ACTIVITY, "act-123456"))
