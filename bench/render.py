"""Rendering a streamed Markdown reply in the browser: main-thread time per delta.

Starts ``manage.py runall`` as ``make run`` does (embedded SQLite and Redis unless DATABASE_URL /
REDIS_URL say otherwise), opens the chat page in Debian's chromium (``--tabs`` tabs on the same
chat, all rendering the reply) and sends ``/echo`` with a Markdown reply of ``--tokens`` tokens
(headings, paragraphs, lists, code blocks: the local model's own mix), streamed by the worker at
``--rate`` tokens per second through the real socket. In every tab it records the main-thread
time of each socket message (parse and handling) and of each render (one per animation frame at
most, one per 100 ms in a hidden tab) with the deltas it shows, so each delta's share of it; then
the same reply rendered in the page one delta at a time with no frame to coalesce them (the worst
case). Prints percentiles per run; run it several times and read the worst run.

    .venv/bin/python bench/render.py --runs 3
    .venv/bin/python bench/render.py --runs 2 --shape code   # one long code block
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, percentile  # noqa: E402
from fanout import App, _free_port  # noqa: E402  (the app as `make run` starts it)

CHROMIUM = os.environ.get("MOTHERSHIP_CHROMIUM", "/usr/bin/chromium")
PROBE = "window.__renderProbe = { times: [], covered: [], events: [], deltas: 0 };"
WORST_CASE = """async (text) => {
  const { streamRenderer } = await import('/static/mothership/markdown.js');
  const words = text.match(/\\s*\\S+/g);
  const element = document.createElement('div');
  element.className = 'msg-content';
  document.getElementById('transcript').append(element);
  const renderer = streamRenderer(element, { schedule: (render) => render() });
  const times = [];
  for (const word of words) {
    const started = performance.now();
    renderer.append(word);
    times.push(performance.now() - started);
  }
  renderer.finish();
  element.remove();
  return times;
}"""


def markdown(tokens: int, seed: int) -> str:
    sys.path.insert(0, str(ROOT))
    from streams.providers.local import markdown_reply

    return "".join(markdown_reply(random.Random(seed), tokens))


def one_code_block(tokens: int, seed: int) -> str:
    """A reply that is one fenced code block of ``tokens`` tokens: the block being written is the
    whole reply until its last line (the renderer re-parses that block on every frame)."""
    sys.path.insert(0, str(ROOT))
    from streams.providers.local import _WORDS

    rng = random.Random(seed)
    out = ["```python"]
    while len(out) < tokens - 1:
        a, b, c = (rng.choice(_WORDS) for _ in range(3))
        out += [f"\n{a}_{b}", " =", f' "{c}"']
    return "".join(out[: tokens - 1]) + "\n```"


def figures(values: list[float]) -> str:
    if not values:
        return "none"
    return f"p50 {percentile(values, 50):.3f} · p99 {percentile(values, 99):.3f} · max {max(values):.3f} ms (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4000, help="tokens in the reply")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second the worker streams")
    parser.add_argument("--tabs", type=int, default=3, help="tabs on the chat, each rendering the reply")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shape", choices=["mix", "code"], default="mix", help="the local model's mix, or one long code block")
    args = parser.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="mothership-render-"))
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "1"),
        "MOTHERSHIP_SEND_RATE": "100000/min",
        "MOTHERSHIP_LOCAL_TOKENS_PER_SECOND": str(args.rate),
        "PYTHONUNBUFFERED": "1",
    }
    if not os.environ.get("DATABASE_URL"):
        env["MOTHERSHIP_SQLITE_PATH"] = str(tmp / "mothership.sqlite3")
    app = App(tmp, port=port, env=env)
    try:
        app.wait_ready()
        os.environ.update({k: v for k, v in env.items() if k == "MOTHERSHIP_SQLITE_PATH"})
        os.environ["REDIS_URL"] = app.redis_url
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mothership.settings")
        os.environ.setdefault("DJANGO_DEBUG", "1")
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from playwright.sync_api import sync_playwright

        from chats import services

        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's loop shares this thread
        name = f"render-{os.getpid()}-{time.time_ns()}"
        user = get_user_model().objects.create_user(username=name, password="pw-123456")
        workspace = services.workspace_create(name="render", owner=user)
        shape = "one code block" if args.shape == "code" else "Markdown"
        print(f"# render: {args.tokens}-token {shape} reply at {args.rate:g} tok/s, {args.tabs} tabs; {app.base}")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            context.add_init_script(PROBE)
            login = context.new_page()
            login.goto(app.base + "/accounts/login/")
            login.fill("#id_username", name)
            login.fill("#id_password", "pw-123456")
            login.click("button[type=submit]")
            login.wait_for_url(app.base + "/")
            for run in range(1, args.runs + 1):
                chat = services.chat_create(workspace=workspace, title=f"render {run}")
                text = (one_code_block if args.shape == "code" else markdown)(args.tokens, run)
                tabs = [context.new_page() for _ in range(args.tabs)]
                for tab in tabs:
                    tab.goto(f"{app.base}/chats/{chat.id}/")
                    tab.wait_for_function("() => document.getElementById('send')")
                time.sleep(1)  # the sockets subscribe
                started = time.monotonic()
                tabs[0].fill("#composer-input", "/echo " + text)
                tabs[0].click("#send")
                for tab in tabs:
                    tab.wait_for_function(
                        "() => document.getElementById('send').textContent === 'Send' && document.querySelector('.msg--assistant')",
                        timeout=(args.tokens / args.rate + 120) * 1000,
                    )
                took = time.monotonic() - started
                for index, tab in enumerate(tabs):
                    probe = tab.evaluate("() => window.__renderProbe")
                    per_delta = (sum(probe["times"]) + sum(probe["events"])) / max(1, probe["deltas"])
                    # Each delta's share of the render that showed it (a render of n deltas costs each 1/n).
                    shares = [t / n for t, n in zip(probe["times"], probe["covered"]) if n for _ in range(n)]
                    bound = percentile(shares, 99) + percentile(probe["events"], 99)
                    print(
                        f"run {run} tab {index + 1}: {probe['deltas']} deltas in {took:.1f} s, {len(probe['times'])} renders; "
                        f"render {figures(probe['times'])}; socket message {figures(probe['events'])}; "
                        f"main-thread per delta mean {per_delta:.3f} ms; render share per delta {figures(shares)}; "
                        f"per-delta p99 bound (share p99 + message p99) {bound:.3f} ms"
                    )
                worst = tabs[0].evaluate(WORST_CASE, text)
                print(f"run {run} worst case (a render per delta, {len(worst)} deltas): {figures(worst)}")
                for tab in tabs:
                    tab.close()
            browser.close()
    finally:
        app.stop()


if __name__ == "__main__":
    main()
