"""Replies as Markdown in a real Chromium: rendered while streaming and after a reload the same,
highlighted code with a copy button, nothing unsafe surviving, and no re-parse per delta; math
(KaTeX) live and after a reload, task lists, code and tables reachable and scrollable by keyboard
on a phone, and axe-core over all of it, light and dark."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from chats.models import Message
from chats.services import chat_create, workspace_create
from streams.models import Stream

from .pages import axe_violations, send, until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

REPLY = """## Launch checklist

Ship **bold** plans with `inline code` and a [safe link](https://example.com/docs).

- first item
- second item

```python
def launch(count):
    return count + 1
```

Raw <img src=x onerror="window.__xss = 1"> and <script>window.__xss = 2</script> stay text,
and [a trap](javascript:window.__xss=3) is no link, nor [another](JaVaScript&#58;window.__xss=4),
[a data one](data:text/html,hi) or <vbscript:window.__xss=5>.

| a | b |
|---|--:|
| 1 | 2 |
"""


@pytest.fixture
def user(make_user):
    return make_user("grace", password="pw-123456")


@pytest.fixture
def chat(user):
    return chat_create(workspace=workspace_create(name="Docs", owner=user), title="Rendering")


def _reply(page):
    return page.locator(".msg--assistant").last.locator(".msg-content")


def test_a_reply_renders_as_markdown_while_streaming_and_the_same_after_a_reload(login, user, chat, stack):
    context, page = login(user)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    page.goto(f"{stack.url}/chats/{chat.id}/")

    send(page, "/echo " + REPLY)
    # While it streams the blocks already written are rendered (not raw Markdown).
    expect(_reply(page).locator("h2")).to_have_text("Launch checklist", timeout=5000)
    assert page.locator("#stop").is_visible(), "the heading was rendered only after the reply ended"
    expect(page.locator("#send")).to_have_text("Send", timeout=15000)  # ended
    assert Stream.objects.get(chat=chat).status == "completed"

    reply = _reply(page)
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("p code")).to_have_text("inline code")
    expect(reply.locator("li")).to_have_count(2)
    expect(reply.locator("table td")).to_have_count(2)
    # Aligned by class (the Content-Security-Policy refuses a style attribute; the test's console check sees it).
    right = reply.locator("table td").last
    assert right.get_attribute("style") is None and right.evaluate("td => getComputedStyle(td).textAlign") == "right"
    expect(reply.locator("pre code.language-python .hljs-keyword").first).to_have_text("def")  # highlighted
    link = reply.get_by_role("link", name="safe link")
    expect(link).to_have_attribute("href", "https://example.com/docs")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    # Nothing unsafe survives: raw HTML is text, a javascript: link is no link.
    assert reply.locator("img, script").count() == 0
    hrefs = reply.locator("a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == ["https://example.com/docs"], hrefs
    expect(reply).to_contain_text('<img src=x onerror="window.__xss = 1">')
    expect(reply).to_contain_text("[a trap](javascript:window.__xss=3)")
    assert page.evaluate("() => window.__xss") is None

    streamed = reply.inner_html()
    # Copy puts the code itself on the clipboard.
    reply.locator(".code-copy").click()
    expect(reply.locator(".code-copy")).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == "def launch(count):\n    return count + 1\n"

    page.reload()
    expect(_reply(page).locator("h2")).to_have_text("Launch checklist")
    assert _reply(page).inner_html() == streamed  # identical after a reload
    assert (
        Message.objects.get(pk=Stream.objects.get(chat=chat).assistant_message_id).content == REPLY.rstrip()
    )  # the composer trims


def test_a_reload_mid_reply_renders_the_text_so_far_and_goes_on(login, user, chat, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    long_reply = "".join(f"## Part {n}\n\nSome words for part {n} of the reply.\n\n" for n in range(40))
    send(page, "/echo " + long_reply)
    until(page, "() => document.querySelectorAll('.msg--assistant:last-child h2').length >= 3")
    page.reload()
    until(page, "() => document.querySelectorAll('.msg--assistant:last-child h2').length >= 1")
    assert page.locator("#stop").is_visible()
    expect(page.locator("#stop")).to_be_hidden(timeout=20000)
    message = Message.objects.get(pk=Stream.objects.get(chat=chat).assistant_message_id)
    assert message.content == long_reply.rstrip()
    expect(_reply(page).locator("h2")).to_have_count(40)
    assert page.locator(".msg--assistant").last.inner_text().count("Part 39") == 1


def test_a_long_reply_is_parsed_in_pieces_not_whole_on_every_delta(login, user, chat, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    # 4,000 tokens of mixed Markdown fed one delta at a time, each rendered at once (the worst
    # case: no frame coalesces deltas). A whole re-parse per delta would read ~2,000x the text.
    result = page.evaluate(
        """async () => {
          const { streamRenderer, renderInto } = await import('/static/mothership/markdown.js');
          const words = [];
          for (let i = 0; words.length < 4000; i += 1) {
            words.push(`\\n\\n## Section ${i}\\n\\nA`, ' paragraph', ' with', ' **bold**', ' words.',
              '\\n\\n- item', ' one\\n- item', ' two', `\\n\\n\\`\\`\\`js\\nconst x${i} = ${i};`, '\\n```');
          }
          const element = document.createElement('div');
          document.body.append(element);
          const renderer = streamRenderer(element, { schedule: (render) => render() });
          for (const word of words) renderer.append(word);
          const text = words.join('');
          const parsed = renderer.stats.parsedChars;
          renderer.finish();
          const fresh = document.createElement('div');
          renderInto(fresh, text);
          const same = element.innerHTML === fresh.innerHTML;
          element.remove();
          return { parsed, length: text.length, renders: renderer.stats.renders, headings: (text.match(/## /g) || []).length, same };
        }"""
    )
    assert result["renders"] == 4000
    assert result["parsed"] < 10 * result["length"], result
    assert result["headings"] >= 400
    assert result["same"]  # when it ends, exactly what a reload renders


def test_the_offline_models_own_reply_shows_a_heading_a_list_and_highlighted_code(login, user, chat, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    send(page, "Show me what you can render")
    expect(page.locator("#send")).to_have_text("Send", timeout=20000)  # ended
    reply = _reply(page)
    expect(reply.locator("h2").first).to_be_visible()
    expect(reply.locator("ul li").first).to_be_visible()
    expect(reply.locator("pre code.language-python .hljs-string").first).to_be_visible()  # highlighted, not plain text
    assert "##" not in reply.inner_text() and "```" not in reply.inner_text()


GROWING_CODE = """() => import('/static/mothership/markdown.js').then(({ streamRenderer, renderInto }) => {
  const source = "```python\\nx = 1\\ny = 'a <b> & c'\\n```\\n\\nThen:\\n\\n```python\\nz = 3\\n```\\n\\n```js\\nlet w;\\n";
  const element = document.createElement('div');
  document.getElementById('transcript').append(element);
  const renderer = streamRenderer(element, { schedule: (render) => render() });
  const seen = [];
  for (const piece of source.match(/[\\s\\S]{1,3}/g)) {
    renderer.append(piece);
    const code = element.querySelector('.md-tail pre code');
    seen.push(code ? code.textContent : null);
  }
  const live = element.querySelector('.md-done').innerText + '|' + element.querySelector('.md-tail').innerText;
  renderer.finish();
  const reloaded = document.createElement('div');
  renderInto(reloaded, renderer.text);
  const final = element.innerHTML === reloaded.innerHTML;
  element.remove();
  return { seen, live, final, text: renderer.text };
})"""


def test_a_growing_code_block_shows_exactly_its_text_so_far_and_ends_as_a_reload_shows_it(login, user, chat, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    result = page.evaluate(GROWING_CODE)
    # While a block is being written, the code shown is its text so far (escaped, never markup)
    shown = [s for s in result["seen"] if s is not None]
    assert any(s.startswith("x = 1\ny = 'a <b> & c'") for s in shown)
    assert shown[-1].startswith("let w;")
    assert all("```" not in s for s in shown)
    assert "z = 3" in result["live"] and "Then:" in result["live"]
    # And once it ends, the reply is exactly what a reload renders
    assert result["final"] is True


# Every feature at once: math inline and display (with dollar amounts that must stay text), a task
# list, a code block with a line no phone holds, and a table wider than a phone.
EVERYTHING = r"""## Everything at once

Energy is $E = mc^2$ and the sum $\sum_{i=1}^{n} i = \frac{n(n+1)}{2}$, while lunch costs $5 and $10.

$$
\int_0^1 x^2 \, dx = \frac{1}{3}
$$

- [ ] write the draft
- [x] pick a title

```python
def area(radius):
    return 3.14159 * radius ** 2  # a comment long enough that no phone and no narrow desktop column shows all of it on one line
```

| Measurement | Instrumentation | Characteristically | Internationalization | Electroencephalography |
|---|---|---|---|--:|
| velocity | anemometer | considerable | standardization | 12 |
"""

LIVE_MATH = r"""() => import('/static/mothership/markdown.js').then(({ streamRenderer, renderInto }) => {
  const source = arguments_source;
  const element = document.createElement('div');
  element.className = 'msg-content';
  document.getElementById('transcript').append(element);
  const renderer = streamRenderer(element, { schedule: (render) => render() });
  const frames = [];
  for (const piece of source.match(/[\s\S]{1,3}/g)) {
    renderer.append(piece);
    const text = renderer.text;
    const opened = (text.match(/^\$\$/gm) || []).length;
    const closedInline = /\$\$\s*$/.test(text.split('\n').slice(-1)[0]) && opened % 2 === 0;
    frames.push({
      open: opened % 2 === 1,
      pending: element.querySelectorAll('.math-block--pending').length,
      display: element.querySelectorAll('.katex-display').length,
      rawDollars: element.querySelector('.md-tail').innerText.includes('$$'),
    });
  }
  const shape = (root) => ['.katex', '.katex-display', '.math-block', 'input[type=checkbox][disabled]', '.table-scroll',
    '.code-block', 'pre[tabindex="0"]', '.code-lang', '.task-list-item'].map((s) => root.querySelectorAll(s).length);
  const live = shape(element);
  const styled = element.querySelectorAll('.katex-html [style]').length;
  renderer.finish();
  const reloaded = document.createElement('div');
  renderInto(reloaded, renderer.text);
  const result = { frames, live, reloaded: shape(reloaded), styled, same: element.innerHTML === reloaded.innerHTML,
    dataLeft: element.querySelectorAll('[data-math-style]').length };
  element.remove();
  return result;
})"""


def test_math_renders_while_streaming_a_display_block_shows_its_tex_until_closed_and_live_matches_a_reload(
    login, user, chat, stack
):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    source = EVERYTHING.replace("## Everything at once\n\n", "")
    result = page.evaluate(LIVE_MATH.replace("arguments_source", json.dumps(source)))

    frames = result["frames"]
    open_frames = [f for f in frames if f["open"]]
    assert open_frames, "the display block was never seen open"
    # While its closing $$ has not come, the block shows its TeX, marked pending, never raw "$$"
    assert all(f["pending"] == 1 and f["display"] == 0 and not f["rawDollars"] for f in open_frames[1:]), open_frames
    # Once closed, it is typeset, and stays so (no flicker back to TeX)
    first_typeset = next(i for i, f in enumerate(frames) if f["display"])
    assert all(f["display"] == 1 and f["pending"] == 0 for f in frames[first_typeset:])
    # Live (before the end) holds what a reload holds: 2 inline + 1 display formula, 2 disabled
    # checkboxes, a wrapped table, a decorated code block
    assert result["live"] == result["reloaded"] == [3, 1, 1, 2, 1, 1, 1, 1, 2], result
    assert result["same"] is True
    # KaTeX's placement survived the sanitizer (set through the CSSOM, not as markup)
    assert result["styled"] > 5 and result["dataLeft"] == 0


def _everything_checks(page, reply) -> None:
    expect(reply.locator(".katex")).to_have_count(3)
    expect(reply.locator(".math-block .katex-display")).to_have_count(1)
    assert "$$" not in reply.inner_text()
    assert reply.locator(".katex-mathml annotation").first.text_content() == "E = mc^2"  # assistive tech gets MathML
    expect(reply.locator("p").first).to_contain_text("while lunch costs $5 and $10.")  # amounts stay text
    # Task list: disabled checkboxes named by their items
    todo = reply.get_by_role("checkbox", name="write the draft")
    done = reply.get_by_role("checkbox", name="pick a title")
    expect(todo).to_be_disabled()
    expect(done).to_be_disabled()
    expect(todo).not_to_be_checked()
    expect(done).to_be_checked()
    # Code: its language in the header beside Copy; the <pre> a labelled, focusable region
    expect(reply.locator(".code-block .code-head .code-lang")).to_have_text("python")
    expect(reply.locator(".code-block .code-head .code-copy")).to_have_text("Copy")
    pre = reply.get_by_role("group", name="Code: python")
    expect(pre).to_have_attribute("tabindex", "0")
    expect(reply.get_by_role("group", name="Table")).to_have_count(1)


def test_a_reply_with_math_tasks_code_and_a_table_renders_the_same_after_a_reload(login, user, chat, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    send(page, "/echo " + EVERYTHING)
    expect(page.locator("#send")).to_have_text("Send", timeout=20000)  # ended
    reply = _reply(page)
    _everything_checks(page, reply)
    streamed = reply.inner_html()

    page.reload()
    reply = _reply(page)
    expect(reply.locator("h2")).to_have_text("Everything at once")
    _everything_checks(page, reply)
    assert reply.inner_html() == streamed


def test_tab_reaches_the_code_and_the_table_and_the_arrow_keys_scroll_them_on_a_phone(login, user, chat, stack):
    Message.objects.create(chat=chat, role="user", content="Everything")
    Message.objects.create(chat=chat, role="assistant", content=EVERYTHING)
    _, page = login(user, viewport={"width": 390, "height": 844})
    page.goto(f"{stack.url}/chats/{chat.id}/")
    reply = _reply(page)
    expect(reply.locator(".table-scroll")).to_have_count(1)

    # The code: Tab from its Copy button lands on the <pre>, which scrolls with the arrow keys
    reply.locator(".code-copy").focus()
    page.keyboard.press("Tab")
    pre = reply.locator(".code-block pre")
    assert pre.evaluate("pre => document.activeElement === pre")
    assert pre.evaluate("pre => pre.scrollWidth > pre.clientWidth")
    assert pre.evaluate("pre => getComputedStyle(pre).outlineStyle") != "none"  # focus is visible
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    until(page, "() => document.querySelector('.msg--assistant:last-child pre').scrollLeft > 0", timeout=5)

    # The table: the next Tab stop; it scrolls sideways inside its region, the page does not
    page.keyboard.press("Tab")
    wrapper = reply.locator(".table-scroll")
    assert wrapper.evaluate("w => document.activeElement === w")
    assert wrapper.evaluate("w => w.scrollWidth > w.clientWidth"), "the table fits: it was squeezed"
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    until(page, "() => document.querySelector('.msg--assistant:last-child .table-scroll').scrollLeft > 0", timeout=5)
    # No word is broken across lines to fit
    assert wrapper.evaluate(BROKEN_WORDS) == []


# The words of each table cell that the layout split across two lines.
BROKEN_WORDS = """(wrapper) => {
  const broken = [];
  for (const cell of wrapper.querySelectorAll('th, td')) {
    const node = cell.firstChild;
    if (!node || node.nodeType !== Node.TEXT_NODE) continue;
    for (const match of node.data.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
      if (tops.size > 1) broken.push(match[0]);
    }
  }
  return broken;
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_reply_with_every_feature_has_no_serious_accessibility_violation(login, user, chat, stack, scheme):
    Message.objects.create(chat=chat, role="user", content="Everything")
    Message.objects.create(chat=chat, role="assistant", content=EVERYTHING)
    for viewport, name in (({"width": 1280, "height": 860}, "desktop"), ({"width": 390, "height": 844}, "phone")):
        _, page = login(user, viewport=viewport)
        page.emulate_media(color_scheme=scheme)
        page.goto(f"{stack.url}/chats/{chat.id}/")
        expect(_reply(page).locator(".katex")).to_have_count(3)
        page.evaluate("() => document.fonts.ready")
        assert axe_violations(page) == [], f"{scheme}, {name}"
        if name == "phone":
            assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_a_reply_that_ends_on_a_headings_marker_shows_no_empty_heading_live_or_after_a_reload(login, user, chat, stack):
    _, page = login(user)
    page.goto(f"{stack.url}/chats/{chat.id}/")
    send(page, "/echo Intro words\n\n##")  # as a reply stopped right after "##" is kept
    expect(page.locator("#send")).to_have_text("Send", timeout=20000)
    reply = _reply(page)
    expect(reply).to_contain_text("Intro words")
    assert reply.locator("h1, h2, h3, h4, h5, h6").count() == 0
    page.reload()
    reply = _reply(page)
    expect(reply).to_contain_text("Intro words")
    assert reply.locator("h1, h2, h3, h4, h5, h6").count() == 0 and axe_violations(page) == []
