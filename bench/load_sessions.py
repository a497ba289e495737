"""Load test: many sessions at once against one app process, from a second process, on loopback.

    python bench/load_sessions.py [--engine draft|tiny] [--sessions 6] [--shots 2] [--frames 9]
                                  [--width 128 --height 80] [--regenerates 1] [--deadline 600] [--json]

Starts `python app.py --engine ENGINE --host 127.0.0.1 --port <free> --data-dir <temp>` as a
subprocess, then drives it with gradio_client from this process: every session makes a new
project, uploads the reference, sets small settings and its own prompts, renders, re-rolls
shot 2, reads its status and exports. A prober session asks for its status every
--probe-interval seconds the whole time. Afterwards it checks and prints:

- isolation: every session's status holds exactly its own prompts, all fresh, and its
  project folder on the server only its own shots;
- one GPU job at a time: the take.json timings (started_at/finished_at of every
  generate_clip, written by the Director) of all sessions never overlap;
- responsiveness: status latency (p50/p95/max) and how many status calls were answered
  while a clip was being rendered;
- requests sent, failures (by endpoint and error), wall time.

Everything is bounded: a fixed number of sessions and calls, one global deadline after
which unfinished sessions are counted as failures, and the server is stopped (terminate,
then kill) and its data folder removed at the end. It only ever talks to 127.0.0.1.
Exit code: 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only, by construction
REFERENCE = ROOT / "assets" / "cat_windowsill.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited with {process.returncode} before answering")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the app did not answer within {seconds:.0f} s")


class Tally:
    """Requests sent and failures, thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.errors: list[str] = []

    def call(self, client, api_name: str, *args):
        with self.lock:
            self.sent[api_name] += 1
        try:
            return client.predict(*args, api_name=api_name)
        except Exception as error:
            with self.lock:
                self.failed[api_name] += 1
                self.errors.append(f"{api_name}: {type(error).__name__}: {str(error)[:200]}")
            raise


def run(args) -> dict:
    from gradio_client import Client, handle_file

    data_dir = Path(tempfile.mkdtemp(prefix="svi-load-"))
    port = free_port()
    url = f"http://{HOST}:{port}/"
    env = {**os.environ, "SVI_MAX_SHOTS": str(max(3, args.shots)), "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1"}
    log_path = data_dir.with_suffix(".log")
    log = open(log_path, "w")
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--engine", args.engine, "--host", HOST,
                               "--port", str(port), "--data-dir", str(data_dir)],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.deadline
    results: dict[int, dict] = {}
    probes: list[tuple[float, float]] = []
    stop = threading.Event()
    try:
        wait_until_up(url, server, min(300, args.deadline))
        up_s = time.monotonic() - started
        settings = {"width": args.width, "height": args.height, "num_frames": args.frames}
        if args.engine != "draft":
            settings["steps"] = args.steps
        # Session 0 renders longer clips, so a status call can start and end inside one of them.
        long_settings = {**settings, "num_frames": args.long_frames, "width": args.long_width,
                         "height": args.long_height}

        def user(number: int) -> None:
            prompts = [f"session {number} shot {i}: a cat, pan left" for i in range(args.shots)]
            client = Client(url, verbose=False)
            tally.call(client, "/new_project", f"load {number}")
            tally.call(client, "/set_reference", handle_file(str(REFERENCE)))
            tally.call(client, "/update_settings", long_settings if number == 0 else settings)
            tally.call(client, "/set_shots", prompts)
            if time.monotonic() < deadline:
                tally.call(client, "/render")
            for _ in range(args.regenerates):
                if time.monotonic() < deadline and args.shots > 1:
                    tally.call(client, "/regenerate", 1, True)
            status = tally.call(client, "/status")
            film = tally.call(client, "/export", 0, None) if time.monotonic() < deadline else None
            results[number] = {"prompts": prompts, "status": status, "film": film}

        def guarded(number: int) -> None:
            try:
                user(number)
            except Exception:
                pass  # counted by the tally

        def prober() -> None:
            client = Client(url, verbose=False)
            tally.call(client, "/new_project", "prober")
            while not stop.is_set() and time.monotonic() < deadline:
                sent = time.time()
                try:
                    tally.call(client, "/status")
                    probes.append((sent, time.time()))
                except Exception:
                    pass
                stop.wait(args.probe_interval)

        probe_thread = threading.Thread(target=prober, daemon=True)
        probe_thread.start()
        users = [threading.Thread(target=guarded, args=(n,), daemon=True) for n in range(args.sessions)]
        for thread in users:
            thread.start()
        for thread in users:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
        stop.set()
        probe_thread.join(timeout=30)
        load_s = time.monotonic() - started - up_s

        # -- checks -----------------------------------------------------------------------------
        problems: list[str] = []
        unfinished = [n for n in range(args.sessions) if n not in results]
        if unfinished:
            problems.append(f"sessions that did not finish: {unfinished}")
        all_prompts = {n: r["prompts"] for n, r in results.items()}
        for number, result in results.items():
            shots = result["status"]["shots"]
            if [s["prompt"] for s in shots] != result["prompts"]:
                problems.append(f"session {number} sees prompts {[s['prompt'] for s in shots]}")
            if any(s["status"] != "fresh" for s in shots):
                problems.append(f"session {number} statuses {[s['status'] for s in shots]}")
            text = json.dumps(result["status"])
            leaked = [p for other, prompts in all_prompts.items() if other != number for p in prompts if p in text]
            if leaked:
                problems.append(f"session {number} sees another session's shots: {leaked[:2]}")
        folders = {}
        for project in data_dir.glob("sessions/*/project/project.json"):
            prompts = tuple(shot["prompt"] for shot in json.loads(project.read_text())["shots"])
            folders[prompts] = project.parent
        for number, prompts in all_prompts.items():
            if tuple(prompts) not in folders:
                problems.append(f"session {number}'s project folder not found with exactly its shots")
        spans = []
        for path in data_dir.glob("sessions/*/project/takes/*/*/take.json"):
            timings = json.loads(path.read_text()).get("timings", {})
            if "started_at" in timings:
                spans.append((timings["started_at"], timings["finished_at"]))
        spans.sort()
        overlaps = sum(1 for (_, end), (start, _) in zip(spans, spans[1:]) if start < end - 1e-3)
        if overlaps:
            problems.append(f"{overlaps} renders overlapped")
        expected_clips = len(results) * (args.shots + (args.regenerates * (args.shots - 1) if args.shots > 1 else 0))
        if len(spans) < expected_clips:
            problems.append(f"{len(spans)} clips rendered, expected at least {expected_clips}")
        latencies = sorted(answered - sent for sent, answered in probes)
        inside = sum(1 for sent, answered in probes if any(s <= sent and answered <= e for s, e in spans))
        overlapping = sum(1 for sent, answered in probes if any(sent < e and answered > s for s, e in spans))
        if spans and not inside:
            problems.append("no status call was sent and answered within one clip's rendering")
        if tally.failed:
            problems.append(f"failed requests: {dict(tally.failed)}")
        busy = sum(e - s for s, e in spans)
        return {
            "engine": args.engine,
            "sessions": args.sessions,
            "shots_per_session": args.shots,
            "settings": settings,
            "requests_sent": sum(tally.sent.values()),
            "requests_by_endpoint": dict(tally.sent),
            "requests_failed": sum(tally.failed.values()),
            "errors": tally.errors[:20],
            "clips_rendered": len(spans),
            "render_overlaps": overlaps,
            "render_busy_s": round(busy, 2),
            "status_calls": len(probes),
            "status_calls_inside_a_render": inside,
            "status_calls_overlapping_a_render": overlapping,
            "status_latency_s": {
                "p50": round(statistics.median(latencies), 3) if latencies else None,
                "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
                "max": round(latencies[-1], 3) if latencies else None,
            },
            "app_start_s": round(up_s, 1),
            "load_s": round(load_s, 1),
            "problems": problems,
            "ok": not problems,
        }
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
        log.close()
        if args.keep:
            print(f"data kept in {data_dir} (server log {log_path})", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
            log_path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", default="draft", help="draft or tiny (any engine the app accepts)")
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=80)
    parser.add_argument("--steps", type=int, default=1, help="denoising steps (not the draft engine)")
    parser.add_argument("--long-frames", type=int, default=161, help="session 0's frames per clip (long renders)")
    parser.add_argument("--long-width", type=int, default=416)
    parser.add_argument("--long-height", type=int, default=240)
    parser.add_argument("--regenerates", type=int, default=1, help="re-rolls of shot 2 (cascading) per session")
    parser.add_argument("--probe-interval", type=float, default=0.1)
    parser.add_argument("--deadline", type=float, default=600, help="seconds for everything, app start included")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and server log")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= 64:
        parser.error("--sessions must be 1..64 (this is a bounded test)")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>30}: {value}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
