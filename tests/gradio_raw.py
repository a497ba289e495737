"""Calling a Gradio event the way a hand-made (hostile) client would: POST queue/join, read queue/data."""

from __future__ import annotations

import json

import httpx


def raw_call(url: str, demo, api_name: str, data: list, session_hash: str) -> dict:
    """The event's `process_completed` message, or {"success": False, "http": code, …} if the join is refused."""
    fn_index = next(d["id"] for d in demo.get_config_file()["dependencies"] if d.get("api_name") == api_name)
    with httpx.Client(base_url=url, timeout=60) as http_client:
        joined = http_client.post("gradio_api/queue/join", json={"data": data, "fn_index": fn_index,
                                                                 "session_hash": session_hash, "event_data": None,
                                                                 "trigger_id": None})
        if joined.status_code != 200:
            return {"success": False, "http": joined.status_code, "output": joined.text}
        with http_client.stream("GET", "gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed":
                        return message
    raise AssertionError("no result")
