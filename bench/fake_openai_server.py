"""An OpenAI-compatible chat server that answers every request after a fixed latency.

Runs in its own process (``python -m bench.fake_openai_server --port 8123
--latency 0.05``) so that its work never shares a core's interpreter with the
client being measured. asyncio + aiohttp: thousands of requests per second on
one core, far more than a 50 ms latency at 64 in flight needs (1,280/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiohttp import web


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {"id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "positive"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": words, "completion_tokens": 1, "total_tokens": words + 1}}


def make_app(latency: float) -> web.Application:
    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency)
        return web.Response(text=json.dumps(_reply(body)), content_type="application/json")

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "bench"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--latency", type=float, default=0.05)
    args = p.parse_args()
    web.run_app(make_app(args.latency), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
