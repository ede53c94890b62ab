"""Replies as Markdown in a real Chromium: rendered while streaming and after a reload the same,
highlighted code with a copy button, nothing unsafe surviving, and no re-parse per delta."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from chats.models import Message
from chats.services import chat_create, workspace_create
from streams.models import Stream

from .pages import send, until

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
