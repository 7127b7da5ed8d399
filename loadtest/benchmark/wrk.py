"""The load generator: Debian's `wrk`, driven by a generated Lua script.

Every request is the same ~800-byte activity a channel would post, with its conversation, user and activity ids
varied: request n belongs to conversation n mod `conversations`, so no two requests in flight share a conversation
(the state of one conversation is never written by two turns at once) while the number of conversations, and with
it the bot's state, stays bounded. With a `rate`, requests are paced on a schedule instead of being sent as fast as
the answers come back, as wrk2 paces them: one wrk thread per connection, connection i sending at t0 + (i + k * N) /
rate, and each request's latency counted from the time it was due, not from when it could be sent. A stall that makes
requests wait behind it counts in full for every request that waited (no schedule debt is forgiven, which would hide
the queueing: coordinated omission). wrk's own latency (from the actual send) is kept as `service_latency_us`.
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


def lua_script(
    template: dict[str, Any],
    path: str,
    result_file: Path,
    conversations: int,
    rate: float | None,
    threads: int = 1,
    run: str = "0",
) -> str:
    # Activity ids carry the run's token: one bot serves several runs over the same conversations, and an id it has
    # processed in a conversation is a redelivery, answered once (docs/scaling.md).
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
    values = {_CONVERSATION: '"conv-" .. c', _USER: '"user-" .. c', _ACTIVITY: f'"act-{run}-" .. number'}
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
statuses = {{}}
bad_bodies = 0
-- Set by setup() for each thread (paced: one connection per thread): its index, the thread count, its first slot.
index, count, first_slot = 0, 1, 0
latencies = {{}}
local next_slot, due, sent_due = nil, nil, nil

request = function()
  -- Request numbers interleave over the threads, so that no two in flight share a conversation.
  local number = index + n * count
  n = n + 1
  if interval > 0 then
    if due == nil then
      -- not delayed (the connection's first request): due at its slot all the same
      next_slot = next_slot or first_slot
      due, next_slot = next_slot, next_slot + interval * count
    end
    sent_due, due = due, nil
  end
  local c = number % conversations
  return wrk.format("POST", {_lua_string(path)}, headers, {concat})
end

response = function(status, _, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 and not string.find(body, '"message"', 1, true) then
    bad_bodies = bad_bodies + 1
  end
  if sent_due ~= nil then
    table.insert(latencies, math.floor((now() - sent_due) * 1e6))
    sent_due = nil
  end
end

if interval > 0 then
  delay = function()
    next_slot = next_slot or first_slot
    due, next_slot = next_slot, next_slot + interval * count
    local wait = due - now()
    if wait <= 0 then return 0 end
    return math.ceil(wait * 1000)
  end
end

local threads = {{}}
local started = nil
setup = function(thread)
  table.insert(threads, thread)
  started = started or now() + 0.2
  thread:set("index", #threads - 1)
  thread:set("count", {threads})
  thread:set("first_slot", started + (#threads - 1) * interval)
end

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  local rank = math.ceil(p / 100 * #sorted)
  if rank < 1 then rank = 1 end
  return sorted[rank]
end

done = function(summary, latency, requests)
  local merged, bad, due_latencies = {{}}, 0, {{}}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do merged[status] = (merged[status] or 0) + count end
    bad = bad + thread:get("bad_bodies")
    for _, value in ipairs(thread:get("latencies")) do table.insert(due_latencies, value) end
  end
  local parts = {{}}
  for status, count in pairs(merged) do table.insert(parts, string.format('"%d": %d', status, count)) end
  local e = summary.errors
  local service = string.format(
    '{{"mean": %.1f, "p50": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d, "max": %d}}',
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9), latency.max)
  local measured = service
  if interval > 0 then
    table.sort(due_latencies)
    local sum = 0
    for _, value in ipairs(due_latencies) do sum = sum + value end
    measured = string.format(
      '{{"mean": %.1f, "p50": %d, "p90": %d, "p95": %d, "p99": %d, "p999": %d, "max": %d}}',
      #due_latencies > 0 and sum / #due_latencies or 0, percentile(due_latencies, 50),
      percentile(due_latencies, 90), percentile(due_latencies, 95), percentile(due_latencies, 99),
      percentile(due_latencies, 99.9), percentile(due_latencies, 100))
  end
  local out = assert(io.open({_lua_string(str(result_file))}, "w"))
  out:write(string.format(
    '{{"requests": %d, "duration_us": %d, "bytes": %d, "bad_bodies": %d, "statuses": {{%s}}, ' ..
    '"errors": {{"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}, ' ..
    '"latency_from": "%s", "latency_us": %s, "service_latency_us": %s}}',
    summary.requests, summary.duration, summary.bytes, bad, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    interval > 0 and "intended send time" or "send", measured, service))
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
    wrk: str,
    url: str,
    script: Path,
    connections: int,
    seconds: float,
    cpus: Sequence[int] | None = None,
    threads: int = 1,
) -> list[str]:
    timeout = REQUEST_TIMEOUT_SECONDS
    command = [
        wrk,
        f"-t{threads}",
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
    # Paced: one thread per connection, so that each thread's script knows which request an answer belongs to.
    threads = connections if rate else 1
    script.write_text(
        lua_script(template, path, result_file, max(conversations, connections * 2), rate, threads, token)
    )
    command = wrk_command(executable, url, script, connections, seconds, cpus, threads)
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
    return len(
        body.replace(_CONVERSATION, "conv-512").replace(_USER, "user-512").replace(_ACTIVITY, "act-0123abcd-123456")
    )
