"""Live fan-out under load, end to end: the app started the way ``make run`` starts it.

Starts ``manage.py runall`` (web processes, worker processes, beat; embedded SQLite and Redis
unless ``DATABASE_URL`` / ``REDIS_URL`` are set), creates N chats, opens T sockets per chat in
load-client processes, sends the N messages at once and measures, per event at each socket:

- *delivery*: from the event's PUBLISH in Redis (seen by a separate pub/sub subscriber process
  on the chat's channel) to its arrival at the socket, so the model's pace is left out;
- *first delta* and *started*: from the POST to the first ``stream.delta`` / ``stream.started``;
- per socket, the text against the saved message, seq gaps and duplicates;
- CPU seconds and resident memory of every process (web, worker, beat, redis, the load), Redis
  memory per stream log, and (on PostgreSQL) the most connections open at once.

Before the load, ``--idle`` turns on a quiet app measure POST → ``stream.started`` for a single
stream. ``--echo`` also measures a bare Channels pub/sub echo (no app code: a consumer that
joins a group and forwards what is published) at the same load, the ceiling of this box.

``--stalled N`` opens, at run ``--stalled-from``, N sockets whose client never reads, and
subscribes each to every chat of that run and the next ones: the web process's memory and the
other sockets' delivery with them (the server closes each with 4008 once its unread output passes
``MOTHERSHIP_WS_SEND_BUFFER_BYTES``).

Usage: .venv/bin/python bench/fanout.py [--streams 40] [--tabs 2] [--rate 50] [--tokens 400]
       [--runs 1] [--web N] [--workers N] [--echo] [--budget USD] [--stalled N] [--app-dir ../base]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TERMINAL = {"stream.completed", "stream.cancelled", "stream.interrupted", "stream.failed"}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def _event_loop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


# --- the pub/sub subscriber (its own process) ------------------------------------------------


def role_subscriber(spec: dict) -> None:
    """Time every PUBLISH on the chats' channels; prints 'ready', writes {key: t} at EOF on stdin."""
    import msgpack
    import redis

    client = redis.Redis.from_url(spec["redis_url"], socket_timeout=None)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(*spec["channels"])
    seen: dict[str, float] = {}
    stop = threading.Event()

    def _stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=_stdin, daemon=True).start()
    print("ready", flush=True)
    while not stop.is_set():
        message = pubsub.get_message(timeout=0.2)
        if message is None:
            continue
        at = time.monotonic()
        data = msgpack.unpackb(message["data"])  # channels-redis' pub/sub layer: plain msgpack
        if "event" in data:
            key = f"{data['event']['streamId']}:{data['event']['seq']}"
        elif "text" in data:  # an event serialized once by the worker, with its key alongside
            key = f"{data['streamId']}:{data['seq']}"
        else:
            continue  # a tile or warming push
        seen[key] = at
    Path(spec["out"]).write_text(json.dumps(seen))


# --- a load client (its own process): many sockets ----------------------------------------


def role_client(spec: dict) -> None:
    """Open the sockets in ``spec``, subscribe, print 'ready', record every event until all end."""
    _event_loop()
    asyncio.run(_client(spec))


async def _client(spec: dict) -> None:
    import websockets

    sockets = []
    records: list[dict] = []

    async def _open(chat_id: str):
        for attempt in range(20):
            try:
                ws = await websockets.connect(spec["ws_url"], max_size=None, open_timeout=30, close_timeout=1)
                break
            except (OSError, websockets.exceptions.InvalidStatus):
                await asyncio.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeError("could not connect")
        await ws.send(json.dumps(_subscribe(spec, chat_id)))
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") in ("subscribed", "echo.subscribed"):
                return ws
            if frame.get("type") == "error":
                raise RuntimeError(frame)

    for chunk in range(0, len(spec["chats"]), 50):
        sockets += await asyncio.gather(*(_open(c) for c in spec["chats"][chunk : chunk + 50]))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    senders = set(spec.get("senders", ()))  # --send socket: the first tab of each chat sends its message
    sent_at = {}
    for index in sorted(senders):
        chat_id = spec["chats"][index]
        sent_at[index] = time.monotonic()
        await sockets[index].send(
            json.dumps({"type": "message.send", "conversationId": chat_id, "content": f"fan-out {chat_id}", "requestId": "b"})
        )

    async def _read(index: int, ws) -> None:
        record = {"chat": spec["chats"][index], "events": [], "text": {}}
        if index in sent_at:
            record["sent_at"] = sent_at[index]
        records.append(record)
        ends = 0
        try:
            while ends < spec["turns_per_socket"]:
                raw = await asyncio.wait_for(ws.recv(), timeout=spec["timeout"])
                at = time.monotonic()
                event = json.loads(raw)
                kind = event.get("type")
                if kind == "message.sent" or (kind == "error" and event.get("requestId")):
                    record["answer"] = {"at": at, "stream_id": event.get("streamId"), "code": event.get("code")}
                    if kind == "error":
                        break
                    continue
                if "seq" not in event:
                    continue
                record["events"].append((event["streamId"], event["seq"], kind, at))
                if kind == "stream.delta":
                    record["text"][event["streamId"]] = record["text"].get(event["streamId"], "") + event["text"]
                elif kind in TERMINAL:
                    ends += 1
        except TimeoutError:
            record["timed_out"] = True
        await ws.close()

    cpu_at_go = time.process_time()
    await asyncio.gather(*(_read(i, ws) for i, ws in enumerate(sockets)))
    records[0]["cpu"] = time.process_time() - cpu_at_go  # this load client's own CPU seconds
    Path(spec["out"]).write_text(json.dumps(records))


def _subscribe(spec: dict, chat_id: str) -> dict:
    if spec.get("echo"):
        return {"type": "echo.subscribe", "group": chat_id}
    return {"type": "subscribe", "conversationId": chat_id}


# --- processes -------------------------------------------------------------------------------


class Helper:
    """A role of this script in its own process, spoken to over stdin/stdout."""

    def __init__(self, role: str, spec: dict, tmp: Path, name: str):
        self.spec_path = tmp / f"{name}.spec.json"
        self.spec_path.write_text(json.dumps(spec))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", role, "--spec", str(self.spec_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.out = Path(spec["out"])

    def wait_ready(self, timeout: float = 120) -> None:
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"helper did not start: {line!r}")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, *, close_stdin: bool = True, timeout: float = 600):
        if close_stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        return json.loads(self.out.read_text())


class App:
    """``manage.py runall`` as ``make run`` starts it, with its output kept in a log."""

    def __init__(self, tmp: Path, *, port: int, env: dict, app_dir: Path = ROOT):
        self.log_path = tmp / "runall.log"
        self.log = open(self.log_path, "w")
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runall", "--port", str(port), "--no-seed"],
            cwd=app_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.redis_url: str | None = None
        threading.Thread(target=self._pump, daemon=True).start()
        self.base = f"http://127.0.0.1:{port}"

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            self.log.write(line)
            self.log.flush()
            if self.redis_url is None and (said := re.search(r"\bredis: (\S+)", line)):  # after the line's time
                self.redis_url = said.group(1)

    def wait_ready(self, *, timeout: float = 90) -> None:
        """Until /healthz answers and every worker process the app announced is ready."""
        import re

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            announced = [re.search(r"processes: \d+ web, (\d+) worker", line) for line in self.lines]
            workers = next((int(m.group(1)) for m in announced if m), 1)
            ready = sum("ready." in line for line in self.lines)
            if ready >= workers and self.redis_url:
                try:
                    if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("the app did not start:\n" + "".join(self.lines[-40:]))

    def processes(self) -> dict[str, object]:
        """name → psutil.Process for every process the app runs (the supervisor's tree)."""
        import psutil

        found = {}
        root = psutil.Process(self.proc.pid)
        counts: dict[str, int] = {}
        for proc in [root, *root.children(recursive=True)]:
            try:
                cmd = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if "redis-server" in cmd:
                kind = "redis"
            elif "uvicorn" in cmd or "web" in proc.name():
                kind = "web"
            elif " worker" in cmd and ".background" in cmd:
                kind = "background"
            elif " worker" in cmd:
                kind = "worker"
            elif " beat" in cmd:
                kind = "beat"
            elif "runall" in cmd:
                kind = "supervisor"
            else:
                kind = proc.name()
            counts[kind] = counts.get(kind, 0) + 1
            found[f"{kind}-{counts[kind]}" if kind in ("web", "worker") else kind] = proc
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def cpu_seconds(procs: dict) -> dict[str, float]:
    import psutil

    out = {}
    for name, proc in procs.items():
        try:
            times = proc.cpu_times()
            out[name] = times.user + times.system + getattr(times, "children_user", 0) * 0
        except psutil.Error:
            pass
    return out


def rss_mb(procs: dict, kind: str) -> float:
    import psutil

    total = 0
    for name, proc in procs.items():
        if name.startswith(kind):
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
    return total / 2**20


# --- one load run -----------------------------------------------------------------------------


def load_run(app: App, ctx: dict, args, tmp: Path, run_no: int) -> dict:
    import httpx
    import redis

    from chats import services
    from mothership.infra.groups import chat_group, group_channel
    from streams.models import Stream

    chats = [str(services.chat_create(workspace=ctx["workspace"], title=f"fan-out {run_no}.{i}").id) for i in range(args.streams)]
    procs = app.processes()
    rclient = redis.Redis.from_url(app.redis_url)
    redis_before = rclient.info("memory")["used_memory"]
    web_before = rss_mb(procs, "web")
    sockets = [c for c in chats for _ in range(args.tabs)]
    per_client = math.ceil(len(sockets) / args.clients)
    clients = []
    for k in range(args.clients):
        part = sockets[k * per_client : (k + 1) * per_client]
        if not part:
            continue
        # --send socket: each chat's first tab sends (its index in this client's part).
        senders = [i for i in range(len(part)) if (k * per_client + i) % args.tabs == 0] if args.send == "socket" else []
        clients.append(
            Helper(
                "client",
                {
                    "senders": senders,
                    "ws_url": ctx["ws_url"],
                    "chats": part,
                    "turns_per_socket": 1,
                    "timeout": args.tokens / args.rate + 120,
                    "out": str(tmp / f"client-{run_no}-{k}.json"),
                },
                tmp,
                f"client-{run_no}-{k}",
            )
        )
    subscriber = Helper(
        "subscriber",
        {
            "redis_url": app.redis_url,
            "channels": [group_channel(chat_group(c)) for c in chats],
            "out": str(tmp / f"published-{run_no}.json"),
        },
        tmp,
        f"subscriber-{run_no}",
    )
    for helper in [*clients, subscriber]:
        helper.wait_ready()
    if args.stalled and run_no >= args.stalled_from:
        from tests.support.rawws import RawSocket

        # Sockets whose client never reads, opened once, each subscribed to every chat of every run
        # from here on (a socket the server has closed takes no more).
        if "stalled" not in ctx:
            ctx["stalled"] = [RawSocket(ctx["ws_url"]) for _ in range(args.stalled)]
            if args.stalled_read:  # the control: the same sockets, read (and dropped) as fast as they come
                for stalled in ctx["stalled"]:
                    threading.Thread(target=stalled.drain, daemon=True).start()
        for stalled in ctx["stalled"]:
            try:
                for chat_id in chats:
                    stalled.send_json({"type": "subscribe", "conversationId": chat_id})
            except OSError:
                continue
    time.sleep(1.0)
    web_sockets_open = rss_mb(procs, "web")
    import psutil

    load_procs = {"subscriber": psutil.Process(subscriber.proc.pid)}
    cpu_start = cpu_seconds({**procs, **load_procs})
    if args.send == "http":  # the tabs read from now on; the bench posts the messages below
        for client in clients:
            client.go()

    sent_at: dict[str, float] = {}
    stream_of: dict[str, str] = {}
    statuses: dict[int, int] = {}
    answered: list[float] = []
    peaks = {"web_rss": 0.0, "worker_rss": 0.0, "redis": 0, "pg_connections": 0}
    sampling = threading.Event()

    timeline: list[tuple[float, float, float, dict]] = []  # (at, box busy s, box idle s, app CPU s per process)

    def _cpu_sample():
        box = psutil.cpu_times()
        timeline.append((time.monotonic(), sum(box) - box.idle - getattr(box, "iowait", 0), box.idle, cpu_seconds(procs)))

    def _sample():
        pg = None
        if ctx["postgres"]:
            import psycopg

            pg = psycopg.connect(ctx["pg_dsn"], autocommit=True)
        ticks = 0
        while not sampling.wait(0.05):
            _cpu_sample()
            ticks += 1
            if ticks % 5:
                continue
            peaks["web_rss"] = max(peaks["web_rss"], rss_mb(procs, "web"))
            peaks["worker_rss"] = max(peaks["worker_rss"], rss_mb(procs, "worker"))
            if pg is not None:
                (n,) = pg.execute("select count(*) from pg_stat_activity where datname = %s", [ctx["pg_db"]]).fetchone()
                peaks["pg_connections"] = max(peaks["pg_connections"], n)
        if pg is not None:
            pg.close()

    sampler = threading.Thread(target=_sample, daemon=True)
    sampler.start()
    worker_before = rss_mb(procs, "worker")

    async def _send_all():
        limits = httpx.Limits(max_connections=len(chats), max_keepalive_connections=len(chats))
        async with httpx.AsyncClient(base_url=app.base, headers=ctx["headers"], timeout=120, limits=limits) as client:

            async def _send(chat_id):
                sent_at[chat_id] = time.monotonic()
                answer = await client.post(f"/api/mothership/chats/{chat_id}/messages", json={"content": f"fan-out {chat_id}"})
                answered.append(time.monotonic() - sent_at[chat_id])
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code < 300:
                    stream_of[chat_id] = answer.json()["stream_id"]

            await asyncio.gather(*(_send(c) for c in chats))

    how = "on the tabs' sockets" if args.send == "socket" else "POST"
    print(f"  sending {len(chats)} messages at once ({how})", flush=True)
    _cpu_sample()
    started = time.monotonic()
    if args.send == "socket":
        for client in clients:
            client.go()  # each sends its chats' messages at once, on their first tab
    else:
        asyncio.run(_send_all())
    post_seconds = time.monotonic() - started
    # Redis memory of the live logs: sampled while every stream is live (the middle of the run).
    time.sleep(max(0.0, args.tokens / args.rate * 0.5 - post_seconds))
    peaks["redis"] = rclient.info("memory")["used_memory"]
    per_client = [c.finish(close_stdin=False) for c in clients]
    records = [r for part in per_client for r in part]
    for record in records:  # --send socket: what each sender's socket answered
        if "sent_at" in record:
            sent_at[record["chat"]] = record["sent_at"]
            answer = record.get("answer") or {}
            status = 201 if answer.get("stream_id") else answer.get("code", "no answer")
            statuses[status] = statuses.get(status, 0) + 1
            if answer.get("stream_id"):
                stream_of[record["chat"]] = answer["stream_id"]
                answered.append(answer["at"] - record["sent_at"])
    cpu_end_load = {f"load-{i + 1}": part[0].get("cpu", 0.0) for i, part in enumerate(per_client)}
    wall = time.monotonic() - started
    sampling.set()
    sampler.join()
    cpu_end = cpu_seconds({**procs, **load_procs})
    published = subscriber.finish()
    for client in clients:
        client.proc.stdin.close()

    rows = list(Stream.objects.filter(pk__in=list(stream_of.values())))
    queue_wait = [(r.started_at - r.created_at).total_seconds() for r in rows if r.started_at]
    to_delta = [(r.first_delta_at - r.started_at).total_seconds() for r in rows if r.first_delta_at and r.started_at]
    saved = {
        str(s.id): (s.status, s.assistant_message.content if s.assistant_message else "", s.last_seq)
        for s in Stream.objects.filter(pk__in=list(stream_of.values())).select_related("assistant_message")
    }
    delivery, first_delta, first_started, published_at = [], [], [], []
    lost = gaps = dups = wrong_text = unfinished = unpublished = 0
    for record in records:
        chat = record["chat"]
        stream_id = stream_of.get(chat)
        if stream_id is None:
            continue
        mine = [e for e in record["events"] if e[0] == stream_id]
        seqs = [e[1] for e in mine]
        dups += len(seqs) - len(set(seqs))
        gaps += sum(1 for a, b in zip(seqs, seqs[1:]) if b > a + 1)
        status, content, last_seq = saved.get(stream_id, ("missing", "", 0))
        lost += max(0, last_seq - len(set(seqs)))
        if record.get("timed_out") or not mine or mine[-1][2] not in TERMINAL:
            unfinished += 1
        if record["text"].get(stream_id, "") != content or status != "completed":
            wrong_text += 1
        for sid, seq, _kind, at in mine:
            pub = published.get(f"{sid}:{seq}")
            if pub is None:
                unpublished += 1  # replayed from the log, never live-published to this subscriber
            else:
                delivery.append(at - pub)
                published_at.append(pub)
        deltas = [e[3] for e in mine if e[2] == "stream.delta"]
        if deltas:
            first_delta.append(deltas[0] - sent_at[chat])
        starts = [e[3] for e in mine if e[2] == "stream.started"]
        if starts:
            first_started.append(starts[0] - sent_at[chat])
    redis_after = rclient.info("memory")["used_memory"]
    time.sleep(1.0)
    web_after = rss_mb(procs, "web")
    burst = burst_cpu(timeline, started, started + percentile(first_delta, 99)) if first_delta else None
    # Delivery of the events published while the burst's turns were still starting, and after.
    burst_end = started + percentile(first_delta, 99) if first_delta else started
    in_burst = [lag for lag, pub in zip(delivery, published_at, strict=True) if pub <= burst_end]
    after_burst = [lag for lag, pub in zip(delivery, published_at, strict=True) if pub > burst_end]
    cpu = {name: cpu_end.get(name, 0) - cpu_start.get(name, 0) for name in cpu_end} | cpu_end_load
    return {
        "streams": args.streams,
        "tabs": args.tabs,
        "posts": statuses,
        "delivery": delivery,
        "delivery_split": (in_burst, after_burst),
        "first_delta": first_delta,
        "started": first_started,
        "lost": lost,
        "gaps": gaps,
        "dups": dups,
        "wrong_text": wrong_text,
        "unfinished": unfinished,
        "not_live": unpublished,
        "events": sum(len(r["events"]) for r in records),
        "wall": wall,
        "cpu": cpu,
        "mem": {
            "web_per_socket_kb": (web_sockets_open - web_before) * 1024 / max(1, len(sockets)),
            "web_per_stream_kb": (peaks["web_rss"] - web_sockets_open) * 1024 / max(1, args.streams),
            "worker_per_stream_kb": (peaks["worker_rss"] - worker_before) * 1024 / max(1, args.streams),
            "redis_per_live_log_kb": (peaks["redis"] - redis_before) / 1024 / max(1, args.streams),
            "redis_per_full_log_kb": (redis_after - redis_before) / 1024 / max(1, args.streams),
        },
        "web_rss": (web_before, peaks["web_rss"], web_after),
        "stalled": len(ctx.get("stalled", ())),
        "closed_slow": sum("closing it with 4008" in line for line in app.lines),
        "pg_connections": peaks["pg_connections"],
        "queue_wait": queue_wait,
        "answered": answered,
        "to_delta": to_delta,
        "burst": burst,
    }


def burst_cpu(timeline: list, since: float, until: float) -> dict:
    """Where the CPU went from the sends to the p99 first delta: the whole box, and each app process.

    A first delta that waits on a saturated box is bound by the CPU each turn costs to start,
    not by any queue in the app.
    """
    import psutil

    timeline = sorted(timeline, key=lambda sample: sample[0])
    start = [sample for sample in timeline if sample[0] <= since][-1]
    end = min(timeline, key=lambda sample: abs(sample[0] - until))
    busy, idle = end[1] - start[1], end[2] - start[2]
    per_process = {name: end[3].get(name, 0) - start[3].get(name, 0) for name in end[3]}
    return {
        "wall": end[0] - start[0],
        "busy_share": busy / max(1e-9, busy + idle),
        "cores": psutil.cpu_count(),
        "per_process": per_process,
        "others": busy - sum(per_process.values()),
    }


def idle_run(app: App, ctx: dict, samples: int, send: str = "http") -> dict:
    """One stream on a quiet app, ``samples`` times: send → stream.started and → first delta
    (``send``: POST, or ``message.send`` on the tab's socket)."""
    import httpx
    import websockets

    from chats import services

    chat_id = str(services.chat_create(workspace=ctx["workspace"], title="idle").id)

    answered = []

    async def _go():
        started, deltas = [], []
        async with (
            httpx.AsyncClient(base_url=app.base, headers=ctx["headers"], timeout=30) as client,
            websockets.connect(ctx["ws_url"]) as ws,
        ):
            await ws.send(json.dumps({"type": "subscribe", "conversationId": chat_id}))
            while json.loads(await ws.recv())["type"] != "subscribed":
                pass
            for i in range(samples):
                t0 = time.monotonic()
                early = []
                if send == "socket":
                    await ws.send(json.dumps({"type": "message.send", "conversationId": chat_id, "content": f"idle {i}"}))
                    while (event := json.loads(await ws.recv()))["type"] != "message.sent":
                        if event["type"] == "error":
                            raise RuntimeError(event)
                        early.append((event, time.monotonic()))  # the turn's first events may come first
                    answered.append(time.monotonic() - t0)
                    stream_id = event["streamId"]
                else:
                    answer = await client.post(f"/api/mothership/chats/{chat_id}/messages", json={"content": f"idle {i}"})
                    answered.append(time.monotonic() - t0)
                    answer.raise_for_status()
                    stream_id = answer.json()["stream_id"]
                kinds = {event["type"]: at for event, at in early if event.get("streamId") == stream_id}
                if "stream.started" in kinds:
                    started.append(kinds["stream.started"] - t0)
                if "stream.delta" in kinds:
                    deltas.append(kinds["stream.delta"] - t0)
                while "stream.delta" not in kinds:
                    event = json.loads(await ws.recv())
                    if event.get("streamId") != stream_id:
                        continue
                    if event["type"] == "stream.started":
                        started.append(time.monotonic() - t0)
                    elif event["type"] == "stream.delta":
                        deltas.append(time.monotonic() - t0)
                        break
                await client.post(f"/api/mothership/chats/{chat_id}/cancel", json={"stream_id": stream_id})
                while True:
                    event = json.loads(await ws.recv())
                    if event.get("streamId") == stream_id and event["type"] in TERMINAL:
                        break
                await asyncio.sleep(0.2)
        return started, deltas

    started, deltas = asyncio.run(_go())
    return {"started": started, "first_delta": deltas, "answered": answered}


def warm_backlog(count: int):
    """Queue ``count`` real warm tasks (each claims nothing when it runs) on the background queue.

    Returns a function that tells how many are still queued.
    """
    from mothership.celery import app as celery_app
    from mothership.celery import background_queue
    from mothership.infra.redis import get_redis
    from warming.tasks import warm_batch

    redis = get_redis()
    scratch = f"bench-scratch-{os.getpid()}"
    warm_batch.apply_async(args=[[str(uuid.uuid4())], "no-such-claim"], queue=scratch)
    (message,) = redis.lrange(scratch, 0, -1)
    redis.delete(scratch)
    queue = background_queue(celery_app.conf.task_default_queue)
    pipe = redis.pipeline(transaction=False)
    for start in range(0, count, 500):
        pipe.lpush(queue, *[message] * min(500, count - start))
    pipe.execute()
    return lambda: redis.llen(queue)


# --- the bare Channels echo (the ceiling) -----------------------------------------------------


def echo_run(args, tmp: Path, redis_url: str) -> dict:
    """The same N×T sockets on a bare Channels consumer; a publisher sends at the same rate."""
    import redis

    port = _free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": "bench.echo_asgi_settings", "PYTHONPATH": str(ROOT)}
    # The app's own server setup (uvloop, httptools, no deflate) and as many processes as the
    # app runs, so the echo is the ceiling of the same stack without the app's code.
    from mothership.processes import cores, web_argv

    argv = web_argv(port=port)
    argv[argv.index("mothership.asgi:application")] = "bench.echo_asgi:application"
    server = subprocess.Popen(
        [*argv, "--workers", str(args.web or cores()), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    try:
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        groups = [f"echo{i}" for i in range(args.streams)]
        sockets = [g for g in groups for _ in range(args.tabs)]
        per_client = math.ceil(len(sockets) / args.clients)
        frames = int(args.tokens * args.frames_per_token)
        clients = [
            Helper(
                "client",
                {
                    "ws_url": f"ws://127.0.0.1:{port}/",
                    "chats": sockets[k * per_client : (k + 1) * per_client],
                    "turns_per_socket": 1,
                    "timeout": 60,
                    "echo": True,
                    "out": str(tmp / f"echo-client-{k}.json"),
                },
                tmp,
                f"echo-client-{k}",
            )
            for k in range(args.clients)
            if sockets[k * per_client : (k + 1) * per_client]
        ]
        for c in clients:
            c.wait_ready()
        for c in clients:
            c.go()
        from bench.echo_asgi import publish_channel

        client = redis.Redis.from_url(redis_url)
        import msgpack

        duration = args.tokens / args.rate
        published: dict[str, float] = {}
        t0 = time.monotonic()
        for k in range(1, frames + 2):
            due = t0 + k * duration / frames
            time.sleep(max(0.0, due - time.monotonic()))
            pipe = client.pipeline(transaction=False)
            kind = "stream.completed" if k == frames + 1 else "stream.delta"
            for g in groups:
                event = {"type": kind, "streamId": g, "seq": k, "text": " word"}
                pipe.publish(publish_channel(g), msgpack.packb({"type": "echo.event", "event": event}))
            at = time.monotonic()
            pipe.execute()
            for g in groups:
                published[f"{g}:{k}"] = at
        records = [r for c in clients for r in c.finish()]
        delivery = [
            at - published[f"{sid}:{seq}"] for r in records for sid, seq, _k, at in r["events"] if f"{sid}:{seq}" in published
        ]
        received = sum(len(r["events"]) for r in records)
        return {"delivery": delivery, "expected": len(sockets) * (frames + 1), "received": received}
    finally:
        server.terminate()
        server.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- report -----------------------------------------------------------------------------------


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:,.1f}" if values else "–"


def report(label: str, run: dict, echo: dict | None) -> None:
    d = run["delivery"]
    print(
        f"| {label} | {run['streams']} × {run['tabs']} | {ms(d, 50)} / {ms(d, 99)} / {ms(d, 100)} ms "
        f"| {ms(run['first_delta'], 50)} / {ms(run['first_delta'], 99)} ms | {ms(run['started'], 99)} ms "
        f"| {run['lost']} / {run['gaps']} / {run['dups']} | {run['wrong_text']} | {run['unfinished']} "
        f"| {run['posts']} | {run['pg_connections'] or '–'} |"
    )
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(run["cpu"].items()))
    print(f"  CPU s over {run['wall']:.1f} s wall: {cpu}")
    print(
        f"  turn start: send answered p50 / p99 {ms(run['answered'], 50)} / {ms(run['answered'], 99)} ms; "
        f"created → claimed by a worker p50 / p99 {ms(run['queue_wait'], 50)} / {ms(run['queue_wait'], 99)} ms; "
        f"claimed → first delta p50 / p99 {ms(run['to_delta'], 50)} / {ms(run['to_delta'], 99)} ms"
    )
    if run["burst"]:
        b = run["burst"]
        per = ", ".join(f"{k} {v:.2f}" for k, v in sorted(b["per_process"].items()))
        print(
            f"  burst (sends → p99 first delta, {b['wall']:.2f} s): box {b['busy_share']:.0%} busy on {b['cores']} cores; "
            f"CPU s: {per}, everything else (the load clients, the bench, PostgreSQL) {b['others']:.2f}"
        )
        # Per turn of the burst (what a turn's start costs, the streaming of the turns already started included).
        kinds = {"web": 0.0, "worker": 0.0, "redis": 0.0}
        for name, seconds in b["per_process"].items():
            kind = name.split("-")[0]
            if kind in kinds:
                kinds[kind] += seconds
        n = max(1, run["streams"])
        app_ms = sum(b["per_process"].values()) * 1000 / n
        print(
            f"  per turn in the burst: web {kinds['web'] * 1000 / n:.1f} ms, workers {kinds['worker'] * 1000 / n:.1f} ms, "
            f"redis {kinds['redis'] * 1000 / n:.1f} ms, the app in all {app_ms:.1f} ms, the box in all "
            f"{(sum(b['per_process'].values()) + b['others']) * 1000 / n:.1f} ms of CPU"
        )
    if run.get("delivery_split"):
        in_burst, after_burst = run["delivery_split"]
        print(
            f"  delivery p99 of the events published in the burst (sends → p99 first delta): {ms(in_burst, 99)} ms "
            f"({len(in_burst):,} events); after it: {ms(after_burst, 99)} ms ({len(after_burst):,})"
        )
    events_per_s = run["events"] / run["wall"]
    print(f"  events at the sockets: {run['events']:,} ({events_per_s:,.0f}/s); replayed, not live: {run['not_live']}")
    m = run["mem"]
    print(
        f"  memory: web {m['web_per_socket_kb']:.0f} KiB per open socket, {m['web_per_stream_kb']:.0f} KiB per live stream; "
        f"worker {m['worker_per_stream_kb']:.0f} KiB per live stream; Redis {m['redis_per_live_log_kb']:.1f} KiB per live "
        f"log (mid-reply), {m['redis_per_full_log_kb']:.1f} KiB per finished log"
    )
    before, peak, after = run["web_rss"]
    print(
        f"  web RSS: {before:.1f} MB before the run, {peak:.1f} MB at its peak, {after:.1f} MB after; "
        f"never-reading sockets {run['stalled']}, closed by the server with 4008 so far {run['closed_slow']}"
    )
    if echo and echo["delivery"] and d:
        e = echo["delivery"]
        print(
            f"  bare Channels echo at the same load: p50 / p99 {ms(e, 50)} / {ms(e, 99)} ms "
            f"({echo['received']:,} of {echo['expected']:,} frames); this run's delivery p99 is "
            f"{percentile(d, 99) / max(1e-9, percentile(e, 99)):.1f}× the echo's"
        )


def set_budget(workspace, usd: float) -> None:
    """Budgets on the workspace, so every frame's charge is checked against them (an app that has none says so)."""
    from decimal import Decimal

    from django.db import DatabaseError

    try:
        from spend.services import budget_set

        budget_set(workspace_id=workspace.pk, monthly_usd=Decimal(str(usd)), member_daily_usd=Decimal(str(usd)))
        print(f"# budgets: {usd:g} USD a month and a member a day")
    except (ImportError, DatabaseError):
        print("# budgets: this app has none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["client", "subscriber"])
    parser.add_argument("--spec")
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--tabs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second of the local model")
    parser.add_argument("--tokens", type=int, default=400, help="tokens per reply")
    parser.add_argument("--runs", type=int, default=1, help="load runs on the same app")
    parser.add_argument("--idle", type=int, default=20, help="single-stream samples on the quiet app (0: none)")
    parser.add_argument("--clients", type=int, default=0, help="load-client processes (default: one per 100 sockets)")
    parser.add_argument("--web", type=int, help="WEB_CONCURRENCY for the app (default: its own)")
    parser.add_argument("--workers", type=int, help="MOTHERSHIP_WORKER_PROCESSES for the app (default: its own)")
    parser.add_argument("--echo", action="store_true", help="also measure a bare Channels echo at the same load")
    parser.add_argument(
        "--warm-backlog", type=int, default=0, help="idle again behind this many queued warm tasks (the background queue)"
    )
    parser.add_argument("--frames-per-token", type=float, default=0.5, help="echo: frames per token (the app's coalescing)")
    parser.add_argument(
        "--budget", type=float, help="a monthly and a member-daily budget of this many USD on the workspace (never reached)"
    )
    parser.add_argument("--stalled", type=int, default=0, help="never-reading sockets, each on every chat of every run")
    parser.add_argument("--stalled-from", type=int, default=2, help="the first run with never-reading sockets")
    parser.add_argument("--stalled-read", action="store_true", help="the control: those sockets read everything")
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--send",
        choices=["socket", "http"],
        default="socket",
        help="how the messages are sent: on the tabs' sockets (message.send, as the page does) or POST …/messages",
    )
    parser.add_argument(
        "--app-dir", type=Path, default=ROOT, help="run the app of another checkout (an A/B against a base commit)"
    )
    args = parser.parse_args()
    if args.role:
        spec = json.loads(Path(args.spec).read_text())
        (role_client if args.role == "client" else role_subscriber)(spec)
        return
    args.clients = args.clients or max(1, math.ceil(args.streams * args.tabs / 100))
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)

    tmp = Path(tempfile.mkdtemp(prefix="mothership-fanout-"))
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1"),  # what `make run` sets
        # One user sends every turn of the burst: the per-user limits would refuse most of them.
        "MOTHERSHIP_SEND_RATE": os.environ.get("MOTHERSHIP_SEND_RATE", "100000/min"),
        "MOTHERSHIP_MAX_CONCURRENT_TURNS": os.environ.get("MOTHERSHIP_MAX_CONCURRENT_TURNS", "100000"),
        "MOTHERSHIP_WS_TOKEN_IN_URL": "1",  # its tabs connect with ?token=
        "MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": str(args.rate),
        "MOTHERSHIP_LOCAL_REPLY_TOKENS": str(args.tokens),
        "PYTHONUNBUFFERED": "1",
    }
    if not os.environ.get("DATABASE_URL"):
        env["MOTHERSHIP_SQLITE_PATH"] = str(tmp / "mothership.sqlite3")
    for name, value in (("WEB_CONCURRENCY", args.web), ("MOTHERSHIP_WORKER_PROCESSES", args.workers)):
        if value:
            env[name] = str(value)
    app = App(tmp, port=port, env=env, app_dir=args.app_dir)
    try:
        import psutil

        app.wait_ready()
        os.environ.update({k: v for k, v in env.items() if k in ("MOTHERSHIP_SQLITE_PATH",)})
        os.environ["REDIS_URL"] = app.redis_url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mothership.settings")
        os.environ.setdefault("DJANGO_DEBUG", "1")
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.db import DatabaseError
        from rest_framework.authtoken.models import Token

        from chats import services

        user = get_user_model().objects.create_user(username=f"fanout-{os.getpid()}-{time.time_ns()}")
        workspace = services.workspace_create(name="fan-out", owner=user)
        token = Token.objects.create(user=user).key
        if args.budget:
            set_budget(workspace, args.budget)
        db = settings.DATABASES["default"]
        postgres = db["ENGINE"].endswith("postgresql")
        ctx = {
            "workspace": workspace,
            "headers": {"Authorization": f"Token {token}"},
            "ws_url": app.base.replace("http", "ws", 1) + f"/ws/?token={token}",
            "postgres": postgres,
            "pg_db": db["NAME"],
            "pg_dsn": os.environ.get("DATABASE_URL", ""),
        }
        procs = app.processes()
        print(
            f"# fan-out: {args.streams} streams × {args.tabs} tabs, {args.rate:g} tok/s × {args.tokens} tokens; "
            f"database {db['ENGINE'].rsplit('.', 1)[-1]}, redis {app.redis_url}; processes: {', '.join(sorted(procs))}; "
            f"{psutil.cpu_count()} cores; {args.clients} load clients"
        )
        if args.idle:
            idle = idle_run(app, ctx, args.idle, args.send)
            print(
                f"idle ({args.send} send), 1 stream × 1 tab, {len(idle['started'])} turns: send → stream.started p50 {ms(idle['started'], 50)} ms, "
                f"p99 {ms(idle['started'], 99)} ms; send → first delta p50 {ms(idle['first_delta'], 50)} ms; "
                f"send answered p50 {ms(idle['answered'], 50)} ms"
            )
        if args.warm_backlog:
            backlog = warm_backlog(args.warm_backlog)
            idle = idle_run(app, ctx, args.idle or 20)
            print(
                f"idle behind {args.warm_backlog:,} queued warms, {len(idle['started'])} turns: POST → stream.started "
                f"p50 {ms(idle['started'], 50)} ms, p99 {ms(idle['started'], 99)} ms; warms still queued after: {backlog():,}"
            )
        echo = echo_run(args, tmp, app.redis_url) if args.echo else None
        print(
            "| run | streams × tabs | delivery p50 / p99 / max | send → first delta p50 / p99 | → started p99 "
            "| lost / gaps / dups | wrong text | unfinished | send statuses | PG connections (max) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for run_no in range(1, args.runs + 1):
            run = load_run(app, ctx, args, tmp, run_no)
            report(f"{args.label}{run_no}", run, echo)
            time.sleep(2)
        try:
            workspace.delete()
            user.delete()
        except DatabaseError:  # an app without some of this checkout's tables (an A/B): its database goes anyway
            pass
    finally:
        app.stop()


if __name__ == "__main__":
    main()
