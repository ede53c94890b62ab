"""What the browser tests do on a page: send, wait, read."""

from __future__ import annotations

import time
from pathlib import Path


def send(page, text: str) -> None:
    page.fill("#composer-input", text)
    page.click("#send")


def assistant_text(page) -> str:
    return page.locator(".msg--assistant .msg-content").last.inner_text()


def until(page, expression: str, timeout: float = 15) -> None:
    """Poll ``expression`` in the page from here (a background tab runs no rAF-based waits)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            state = page.evaluate(
                "() => [document.getElementById('composer-status')?.textContent, document.getElementById('transcript')?.innerText]"
            )
            raise AssertionError(f"timed out waiting for {expression}; status and transcript: {state}")
        time.sleep(0.1)


def wait_streaming(page, words: int = 5) -> None:
    until(
        page,
        f"() => (document.querySelector('.msg--assistant:last-child .msg-content')?.textContent || '').split(' ').length >= {words}",
    )


def rendered_text(page, source: str) -> str:
    """The text a reply with this Markdown source shows, rendered by the page's own renderer in
    a message bubble of its transcript (so that the same styles apply)."""
    return page.evaluate(
        """async (source) => {
          const { renderInto } = await import('/static/mothership/markdown.js');
          const li = document.createElement('li');
          li.className = 'msg msg--assistant';
          li.innerHTML = '<div class="msg-content"></div>';
          document.getElementById('transcript').append(li);
          renderInto(li.firstChild, source);
          const text = li.firstChild.innerText;
          li.remove();
          return text;
        }""",
        source,
    )


def set_visibility(page, state: str) -> None:
    """What the browser says when its tab is hidden or shown again (headless tabs are all "visible")."""
    page.evaluate(
        """(state) => {
          Object.defineProperty(document, 'visibilityState', { get: () => state, configurable: true });
          document.dispatchEvent(new Event('visibilitychange'));
        }""",
        state,
    )


AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"


def axe_violations(page, impacts: tuple[str, ...] | None = ("serious", "critical")) -> list[str]:
    """axe-core's violations on ``page`` as it is now, one line each: the serious and critical
    ones, or those of ``impacts`` (None: every impact, minor included)."""
    # Evaluated, not added as a <script>: the page's Content-Security-Policy refuses inline scripts.
    page.evaluate(AXE.read_text())
    found = page.evaluate(
        """async (impacts) => {
          const result = await axe.run(document, { resultTypes: ['violations'] });
          return result.violations
            .filter((v) => impacts === null || impacts.includes(v.impact))
            .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
        }""",
        None if impacts is None else list(impacts),
    )
    return found
