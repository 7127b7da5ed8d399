"""The ceiling of this stack: a bare aiohttp handler that parses the activity and answers it, with no botbuilder.

With `deliveryMode: "expectReplies"` the reply comes back in the response body; otherwise it is POSTed to the
activity's serviceUrl over one pooled client session, and the request is answered 201 once the channel accepted it
(as botbuilder does).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

SESSION = web.AppKey("session", aiohttp.ClientSession)


def reply_to(activity: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "text": f"Echo: {activity.get('text', '')}",
        "channelId": activity.get("channelId"),
        "serviceUrl": activity.get("serviceUrl"),
        "conversation": activity.get("conversation"),
        "from": activity.get("recipient"),
        "recipient": activity.get("from"),
        "replyToId": activity.get("id"),
        "locale": activity.get("locale"),
        "inputHint": "acceptingInput",
    }


async def messages(request: web.Request) -> web.Response:
    try:
        activity = json.loads(await request.read())
    except ValueError:
        return web.json_response({"error": "invalid JSON"}, status=400)
    if not isinstance(activity, dict) or not isinstance(activity.get("type"), str):
        return web.json_response({"error": "not an activity"}, status=400)
    reply = reply_to(activity)
    if activity.get("deliveryMode") == "expectReplies":
        return web.json_response({"activities": [reply]})
    service_url = str(activity.get("serviceUrl") or "").rstrip("/")
    conversation = quote(str((activity.get("conversation") or {}).get("id", "")), safe="")
    url = f"{service_url}/v3/conversations/{conversation}/activities/{quote(str(activity.get('id', '')), safe='')}"
    async with request.app[SESSION].post(url, json=reply) as response:
        await response.read()
        if response.status >= 300:
            return web.json_response({"error": f"the channel answered {response.status}"}, status=502)
    return web.Response(status=201)


def create_app() -> web.Application:
    app = web.Application()

    async def session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256, limit_per_host=64)) as client:
            app[SESSION] = client
            yield

    app.cleanup_ctx.append(session)
    app.router.add_post("/api/messages", messages)
    return app
