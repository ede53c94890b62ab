"""Uploads of large files: time, and the web process's memory while it takes them.

Starts the app as ``make run`` does (``manage.py runall``: web, worker, beat; embedded SQLite and
Redis; one web process unless ``--web``), seeds the demo user as it does, signs in as ``demo`` over the API
(``POST /api/auth/token``), makes a chat, then uploads files of each ``--sizes`` (MB) ``--repeat``
times: CSV text, and a PDF of about the same size (one page of text plus an image the text
extraction never reads; pypdf opens it). During each upload the web process's resident memory is
sampled every ``--every`` ms (psutil); reported per kind and size: upload time (median and worst),
peak RSS, and the peak's growth over the RSS just before that upload (the largest of the repeats);
then the growth at the largest size against the smallest, per kind. The target: flat (a file is
streamed to disk and read in chunks, never held whole).

``--s3`` keeps the files in a bucket of a moto S3 server started for the run (as the tests do).

Usage: .venv/bin/python bench/attachments.py [--sizes 1 10 20] [--repeat 5] [--web 1] [--s3]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
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

from fanout import App, _free_port  # noqa: E402  (``make run``'s process tree, as the fan-out bench starts it)

MB = 1024 * 1024


def csv_file(size: int) -> bytes:
    """CSV text of exactly ``size`` bytes."""
    row = b"1024,widget-blue,19.99,in stock,warehouse north,2026-12-07\n"
    data = b"id,name,price,stock,site,date\n" + row * (size // len(row) + 1)
    return data[:size]


def pdf_file(size: int) -> bytes:
    """A PDF of about ``size`` bytes: a page of text whose resources hold an image of noise (unused by the text)."""
    filler = os.urandom(max(0, size - 2048))
    content = b"BT /F1 18 Tf 72 720 Td (Quarterly figures, page 1) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height 1 /ColorSpace /DeviceGray /BitsPerComponent 8 "
        b"/Length %d >>\nstream\n%s\nendstream" % (len(filler), len(filler), filler),
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


class PeakRss:
    """The largest RSS of ``proc`` while the block runs, sampled every ``every`` seconds from a thread."""

    def __init__(self, proc, every: float):
        self.proc, self.every = proc, every
        self.peak = self.before = proc.memory_info().rss
        self.samples = 0

    def _sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self.samples += 1
            self.done.wait(self.every)

    def __enter__(self):
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 20], help="file sizes, MB")
    parser.add_argument("--repeat", type=int, default=5, help="uploads per kind and size")
    parser.add_argument("--web", type=int, default=1, help="web processes (WEB_CONCURRENCY)")
    parser.add_argument("--every", type=float, default=10.0, help="RSS sampling period, ms")
    parser.add_argument("--no-pdf", action="store_true", help="CSV files only")
    parser.add_argument("--s3", action="store_true", help="keep the files in a bucket of a moto S3 server")
    args = parser.parse_args()

    import httpx
    import psutil

    tmp = Path(tempfile.mkdtemp(prefix="mothership-bench-attachments-"))
    env = {
        **os.environ,
        "DJANGO_DEBUG": "1",  # what `make run` sets (and the demo user needs)
        "WEB_CONCURRENCY": str(args.web),
        "MOTHERSHIP_SQLITE_PATH": str(tmp / "mothership.sqlite3"),
        "MOTHERSHIP_ATTACHMENT_DIR": str(tmp / "attachments"),
        "MOTHERSHIP_ATTACHMENT_MAX_BYTES": str(max(args.sizes) * MB + 64 * 1024),
        "MOTHERSHIP_UPLOAD_RATE": "100000/min",
        "PYTHONUNBUFFERED": "1",
    }
    s3 = None
    if args.s3:
        from tests.support.s3 import CREDENTIALS, start_s3_server

        os.environ.update(CREDENTIALS)
        s3 = start_s3_server()
        env.update(s3.env(prefix=f"bench-{uuid.uuid4().hex[:8]}"))
    if os.environ.get("DATABASE_URL"):
        env.pop("MOTHERSHIP_SQLITE_PATH")
    app = App(tmp, port=_free_port(), env=env)
    try:
        app.wait_ready()
        # The demo user `make run` seeds (App starts runall with --no-seed): seeded the same way, then signed in over the API.
        subprocess.run(
            [sys.executable, "manage.py", "seed_demo"],
            cwd=ROOT,
            env={**env, "REDIS_URL": app.redis_url},
            check=True,
            capture_output=True,
        )
        [web] = [proc for name, proc in app.processes().items() if name.startswith("web")][:1]
        client = httpx.Client(base_url=app.base, timeout=120)
        token = client.post("/api/auth/token", json={"username": "demo", "password": "demo"}).json()["token"]
        client.headers["Authorization"] = f"Token {token}"
        workspace = client.get("/api/mothership/workspaces").json()[0]["id"]
        chat = client.post("/api/mothership/chats", json={"workspace": workspace, "title": "uploads"}).json()["id"]

        kinds = [("csv", "text/csv", csv_file)] + ([] if args.no_pdf else [("pdf", "application/pdf", pdf_file)])
        print(
            f"# uploads to {app.base} ({args.web} web process, pid {web.pid}); storage {'S3 (moto)' if s3 else 'folder'}; "
            f"{platform.machine()}, {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}; web RSS at start {web.memory_info().rss / MB:.1f} MB"
        )
        client.post(
            f"/api/mothership/chats/{chat}/attachments", files={"file": ("warm.csv", csv_file(1000))}
        )  # first-use imports
        results: dict[tuple[str, int], dict] = {}
        for kind, content_type, make in kinds:
            for size_mb in args.sizes:
                data = make(size_mb * MB)
                times, peaks, growths = [], [], []
                for n in range(args.repeat):
                    with PeakRss(web, args.every / 1000) as rss:
                        started = time.perf_counter()
                        answer = client.post(
                            f"/api/mothership/chats/{chat}/attachments", files={"file": (f"f{n}.{kind}", data, content_type)}
                        )
                        times.append(time.perf_counter() - started)
                    if answer.status_code != 201 or answer.json()["content_type"] != content_type:
                        raise SystemExit(f"upload of {size_mb} MB {kind}: {answer.status_code} {answer.text[:300]}")
                    peaks.append(rss.peak)
                    growths.append(rss.peak - rss.before)
                results[(kind, size_mb)] = {"times": times, "peak": max(peaks), "growth": max(growths)}
                print(
                    f"{kind} {size_mb:>3} MB × {args.repeat}: upload median {statistics.median(times) * 1000:,.0f} ms, "
                    f"worst {max(times) * 1000:,.0f} ms; web peak RSS {max(peaks) / MB:.1f} MB, "
                    f"growth over the upload {max(growths) / MB:+.1f} MB (worst of {args.repeat}; {rss.samples} samples last)",
                    flush=True,
                )
        print()
        print("| kind | size | upload median / worst (ms) | web peak RSS (MB) | RSS growth during the upload, worst (MB) |")
        print("| --- | --- | --- | --- | --- |")
        for (kind, size_mb), r in results.items():
            print(
                f"| {kind} | {size_mb} MB | {statistics.median(r['times']) * 1000:,.0f} / {max(r['times']) * 1000:,.0f} "
                f"| {r['peak'] / MB:.1f} | {r['growth'] / MB:+.1f} |"
            )
        small, large = min(args.sizes), max(args.sizes)
        for kind, _, _ in kinds:
            a, b = results[(kind, small)]["growth"], results[(kind, large)]["growth"]
            print(
                f"{kind}: RSS growth {large} MB against {small} MB: {b / MB:+.1f} / {a / MB:+.1f} MB = "
                f"{b / max(a, 1):.2f}× (the file is {large / small:.0f}× larger)"
            )
        client.close()
    finally:
        app.stop()
        if s3 is not None:
            s3.stop()


if __name__ == "__main__":
    main()
