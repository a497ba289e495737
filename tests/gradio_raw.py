"""Calling a Gradio event the way a hand-made (hostile) client would: POST queue/join, read queue/data.

The body is written with Python's json (NaN and ±Infinity as the bare words a hand-made
client can send, which httpx's own encoder refuses to write)."""

from __future__ import annotations

import json

import httpx


def fn_index_of(demo, api_name: str) -> int:
    return next(d["id"] for d in demo.get_config_file()["dependencies"] if d.get("api_name") == api_name)


def raw_call(url: str, demo, api_name: str, data: list, session_hash: str) -> dict:
    """The event's `process_completed` message, or {"success": False, "http": code, …} if the join is refused."""
    return raw_event(url, fn_index_of(demo, api_name), data, session_hash)


def raw_event(url: str, fn_index: int, data: list, session_hash: str) -> dict:
    """raw_call for an event found by its index (page events have no api_name)."""
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None,
                       "trigger_id": None})
    with httpx.Client(base_url=url, timeout=60) as http_client:
        joined = http_client.post("gradio_api/queue/join", content=body,
                                  headers={"content-type": "application/json"})
        if joined.status_code != 200:
            return {"success": False, "http": joined.status_code, "output": joined.text}
        with http_client.stream("GET", "gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed":
                        return message
    raise AssertionError("no result")
