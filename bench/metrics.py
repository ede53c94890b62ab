"""What metrics cost the live fan-out: ``bench/fanout.py`` with ``MOTHERSHIP_METRICS=1`` and ``=0``, A/B.

Each run starts the whole app (``manage.py runall``) with metrics on or off, alternating
on, off, on, off… so drift of the box (other load, a warm cache) lands on both, and runs one
load of ``--streams`` × ``--tabs`` sockets (``bench/fanout.py``'s load run, unchanged). Reported,
per variant: delivery p99 of every run and the worst, and CPU seconds per process kind (web,
worker, redis, beat…) of every run and the worst; then the worst-against-worst difference. With
metrics on, the web process counts the delivery lag of every event at every socket and each
process flushes its counts to Redis once a second: that, and the scrape-free counting at the
worker, is what is measured (nobody scrapes during the load).

Usage: .venv/bin/python bench/metrics.py [--streams 100] [--tabs 2] [--runs 3] [--rate 50] [--tokens 400]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_ROW = re.compile(r"^\| \S* \| (\d+) × (\d+) \| ([\d.,]+) / ([\d.,]+) / ([\d.,]+) ms \| ([\d.,]+) / ([\d.,]+) ms")
_CPU = re.compile(r"CPU s over ([\d.]+) s wall: (.*)$")
_LOST = re.compile(r"\| (\d+) / (\d+) / (\d+) \|")


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def one_run(args, metrics_on: bool) -> dict:
    """One app start, one load run; its delivery and first-delta percentiles and CPU per process kind."""
    env = {**os.environ, "MOTHERSHIP_METRICS": "1" if metrics_on else "0"}
    argv = [
        sys.executable,
        str(ROOT / "bench" / "fanout.py"),
        *("--streams", str(args.streams), "--tabs", str(args.tabs), "--rate", str(args.rate), "--tokens", str(args.tokens)),
        *("--runs", "1", "--idle", "0"),
    ]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = done.stdout
    row = next((m for m in map(_ROW.match, out.splitlines()) if m), None)
    cpu = next((m for m in map(_CPU.search, out.splitlines()) if m), None)
    if done.returncode != 0 or row is None or cpu is None:
        raise SystemExit(f"bench/fanout.py failed ({done.returncode}):\n{out[-3000:]}\n{done.stderr[-3000:]}")
    per_process: dict[str, float] = {}
    for name, seconds in re.findall(r"([\w.-]+) ([\d.]+)", cpu.group(2)):
        kind = re.sub(r"-\d+$", "", name)  # web-1 and web-2 together
        per_process[kind] = per_process.get(kind, 0.0) + float(seconds)
    lost = next((m for m in map(_LOST.search, out.splitlines()) if m and "×" in m.string), None)
    return {
        "delivery_p50": _number(row.group(3)),
        "delivery_p99": _number(row.group(4)),
        "first_delta_p99": _number(row.group(7)),
        "wall": float(cpu.group(1)),
        "cpu": per_process,
        "lost_gaps_dups": lost.groups() if lost else ("?", "?", "?"),
    }


APP = ("web", "worker", "background", "beat", "redis", "supervisor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--tabs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, help="app starts per variant, alternated")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--tokens", type=int, default=400)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"on": [], "off": []}
    for number in range(args.runs):
        for variant in ("on", "off") if number % 2 == 0 else ("off", "on"):
            run = one_run(args, metrics_on=variant == "on")
            results[variant].append(run)
            app_cpu = sum(run["cpu"].get(kind, 0.0) for kind in APP)
            cpu = ", ".join(f"{k} {v:.1f}" for k, v in sorted(run["cpu"].items()))
            print(
                f"metrics {variant}: delivery p50 / p99 {run['delivery_p50']:.1f} / {run['delivery_p99']:.1f} ms, "
                f"first delta p99 {run['first_delta_p99']:.0f} ms, lost/gaps/dups {'/'.join(run['lost_gaps_dups'])}; "
                f"CPU s over {run['wall']:.1f} s: app {app_cpu:.1f} ({cpu})",
                flush=True,
            )
    print()
    print(
        f"| metrics | delivery p99 (ms), {args.runs} runs | worst | app CPU s per run | worst | web CPU s (worst) | worker CPU s (worst) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    worst = {}
    for variant, runs in results.items():
        p99 = [r["delivery_p99"] for r in runs]
        app = [sum(r["cpu"].get(kind, 0.0) for kind in APP) for r in runs]
        web = max(r["cpu"].get("web", 0.0) for r in runs)
        worker = max(r["cpu"].get("worker", 0.0) for r in runs)
        worst[variant] = (max(p99), max(app), web, worker)
        print(
            f"| {variant} | {', '.join(f'{v:.1f}' for v in p99)} | **{max(p99):.1f}** | {', '.join(f'{v:.1f}' for v in app)} "
            f"| **{max(app):.1f}** | {web:.1f} | {worker:.1f} |"
        )
    (p99_on, app_on, web_on, worker_on), (p99_off, app_off, web_off, worker_off) = worst["on"], worst["off"]
    print(
        f"\nworst against worst: app CPU {100 * (app_on - app_off) / app_off:+.1f} %, web {100 * (web_on - web_off) / web_off:+.1f} %, "
        f"worker {100 * (worker_on - worker_off) / worker_off:+.1f} %; delivery p99 {p99_on - p99_off:+.1f} ms"
    )


if __name__ == "__main__":
    main()
