// Replies as Markdown: markdown-it to parse (raw HTML off), DOMPurify on every piece of HTML it
// writes, highlight.js for code, KaTeX for math, task lists. A streaming reply is never parsed
// whole per delta: the blocks that later text can no longer change are rendered once, and only
// the last one is parsed again.
import markdownit from "../vendor/markdown-it/markdown-it.min.js";
import DOMPurify from "../vendor/dompurify/purify.js";
import hljs from "../vendor/highlight.js/highlight.min.js";
import { MATH_ATTRS, MATH_TAGS, applyMathStyles, mathPlugin } from "./markdown-math.js";
import { taskListPlugin } from "./markdown-tasks.js";

function highlight(code, lang) {
  if (!lang || !hljs.getLanguage(lang)) return ""; // markdown-it escapes it as plain code
  try {
    return hljs.highlight(code, { language: lang, ignoreIllegals: true }).value;
  } catch {
    return "";
  }
}

const OPTIONS = { html: false, linkify: true, breaks: false, typographer: false };
// Finished blocks are highlighted; the block still being written is not (it is parsed on every
// frame, and highlighting a growing code block each time would cost the most).
const finished = markdownit({ ...OPTIONS, highlight });
const growing = markdownit(OPTIONS);
finished.use(mathPlugin);
growing.use(mathPlugin, { open: true }); // a $$ block not closed yet shows its TeX until it is
for (const md of [finished, growing]) md.use(taskListPlugin);
// Links and images only to the web, mail, or this site (markdown-it's own check is a blocklist).
const SAFE_URL = /^(https?:|mailto:|[#/?]|\.{0,2}\/)/i;
const SCHEME = /^[a-z][a-z0-9+.-]*:/i;
for (const md of [finished, growing]) {
  const blocklist = md.validateLink.bind(md);
  md.validateLink = (url) => blocklist(url) && (SAFE_URL.test(url.trim()) || !SCHEME.test(url.trim()));
}

// Table cells aligned by class, not by a style attribute: the Content-Security-Policy allows no
// inline style.
for (const md of [finished, growing]) {
  md.core.ruler.push("align_by_class", (state) => {
    for (const token of state.tokens) {
      if (token.type !== "th_open" && token.type !== "td_open") continue;
      const style = token.attrGet("style");
      if (!style) continue;
      token.attrs = token.attrs.filter(([name]) => name !== "style");
      const align = /text-align:\s*(left|right|center)/.exec(style);
      if (align) token.attrJoin("class", `md-align-${align[1]}`);
    }
  });
  // A table scrolls sideways in a box of its own (a phone's width breaks no word): reachable
  // and scrollable by keyboard.
  md.renderer.rules.table_open = (tokens, i, options, env, self) =>
    `<div class="table-scroll" tabindex="0" role="group" aria-label="Table">${self.renderToken(tokens, i, options)}`;
  md.renderer.rules.table_close = (tokens, i, options, env, self) => `${self.renderToken(tokens, i, options)}</div>\n`;
}

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

// Set once: a config passed on every call is parsed on every call (most of a small sanitize's cost).
// No style attribute survives (the policy would refuse it anyway; KaTeX's go through the CSSOM).
DOMPurify.setConfig({ USE_PROFILES: { html: true }, ADD_TAGS: MATH_TAGS, ADD_ATTR: MATH_ATTRS, FORBID_ATTR: ["style"] });

function clean(html) {
  return DOMPurify.sanitize(html);
}

export function renderMarkdown(text) {
  return clean(finished.render(text));
}

// Sanitized HTML into ``element``, then what markup may not carry: KaTeX's placement and the
// code blocks' header.
function show(element, html) {
  element.innerHTML = html;
  applyMathStyles(element);
  decorateCode(element);
}

export function copyButton(className, label) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = className;
  button.textContent = "Copy";
  button.setAttribute("aria-label", label);
  return button;
}

// Each code block of ``root`` not done yet: a header with its language and a copy button, and
// its <pre> a labelled group that the keyboard can reach and scroll.
function decorateCode(root) {
  for (const pre of root.querySelectorAll("pre")) {
    if (pre.parentElement?.classList.contains("code-block")) continue;
    const language = /(?:^|\s)language-(\S+)/.exec(pre.querySelector("code")?.className ?? "")?.[1] ?? "";
    const wrap = document.createElement("div");
    wrap.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const label = document.createElement("span");
    label.className = "code-lang";
    label.textContent = language;
    head.append(label, copyButton("code-copy", language ? `Copy this ${language} code` : "Copy this code"));
    pre.tabIndex = 0;
    pre.setAttribute("role", "group");
    pre.setAttribute("aria-label", language ? `Code: ${language}` : "Code");
    pre.replaceWith(wrap);
    wrap.append(head, pre);
  }
}

document.addEventListener("click", async (e) => {
  const button = e.target.closest?.(".code-copy");
  if (!button) return;
  const code = button.closest(".code-block")?.querySelector("pre")?.innerText ?? "";
  try {
    await navigator.clipboard.writeText(code);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => (button.textContent = "Copy"), 1500);
});

// The character offset where line ``line`` (0-based) of ``text`` begins.
function lineOffset(text, line) {
  let at = 0;
  for (let i = 0; i < line; i += 1) {
    const next = text.indexOf("\n", at);
    if (next < 0) return text.length;
    at = next + 1;
  }
  return at;
}

// Renders one message into ``element`` as its text grows. ``append`` is cheap (the render runs
// once per animation frame); ``finish`` renders the whole text once, exactly as a reload does.
// Once per frame; a background tab runs no animation frames, so it renders on a timer instead.
function nextFrame(render) {
  if (document.hidden) setTimeout(render, 100);
  else requestAnimationFrame(render);
}

export function streamRenderer(element, { schedule = nextFrame } = {}) {
  const done = document.createElement("div");
  const tail = document.createElement("div");
  done.className = "md-done";
  tail.className = "md-tail";
  element.replaceChildren(done, tail);
  element.classList.add("markdown");
  let text = "";
  let frozen = 0; // text[0:frozen] is rendered in ``done`` for good
  let pending = false;
  let waiting = 0; // deltas appended since the last render
  let over = false; // finished: the element holds the final render
  const stats = { parsedChars: 0, renders: 0 };
  let codeShown = null; // the code block ``tail`` shows as one text node: { info, text, node }

  // ``tokens`` are one fenced code block whose text extends the one shown: append the rest.
  function growCode(tokens) {
    if (tokens.length !== 1 || tokens[0].type !== "fence") return false;
    const { info, content } = tokens[0];
    if (!codeShown || codeShown.info !== info || !content.startsWith(codeShown.text)) {
      tail.innerHTML = growing.renderer.render(tokens, growing.options, {});
      decorateCode(tail); // its header shows while it grows: nothing moves when it is done
      const code = tail.querySelector("pre > code");
      if (!code || code.childNodes.length > 1) return true; // shown; appended to only when it is one text node
      if (!code.firstChild) code.append(document.createTextNode(""));
      codeShown = { info, text: content, node: code.firstChild };
      return true;
    }
    codeShown.node.appendData(content.slice(codeShown.text.length));
    codeShown.text = content;
    return true;
  }

  function render() {
    pending = false;
    if (over) return;
    const probe = globalThis.__renderProbe; // set by bench/render.py: the main-thread time of each render
    const started = probe ? performance.now() : 0;
    stats.renders += 1;
    const rest = text.slice(frozen);
    const tokens = growing.parse(rest, {}); // the one parse of this render
    stats.parsedChars += rest.length;
    // Top-level blocks: every one but the last is final (appended text extends only the last).
    const starts = [];
    tokens.forEach((t, i) => t.level === 0 && t.nesting >= 0 && t.map && starts.push(i));
    let last = 0;
    if (starts.length > 1) {
      last = starts[starts.length - 1];
      // Rendered from the same tokens, highlighted this time, and never again.
      const block = document.createElement("div");
      show(block, clean(finished.renderer.render(tokens.slice(0, last), finished.options, {})));
      done.append(...block.childNodes);
      frozen += lineOffset(rest, tokens[last].map[0]);
      codeShown = null; // the tail shows another block from here
    }
    // The block being written is replaced on the next frame: markdown-it's safe mode alone (raw
    // HTML off, so every tag and attribute is its own; links allowlisted) keeps it, as DOMPurify
    // would cost most of a render. Everything that stays is sanitized as well. A code block that
    // only grew keeps its element and gets the new text appended: a long one is not laid out anew
    // on every frame. Math is the exception: KaTeX's output is sanitized and placed as above.
    const growingTokens = last ? tokens.slice(last) : tokens;
    // A heading whose words have not arrived yet ("## ") waits for them: an empty heading is
    // announced as one, and read as nothing.
    const emptyHeading = growingTokens[0]?.type === "heading_open" && !growingTokens[1]?.content.trim();
    if (emptyHeading) {
      tail.replaceChildren();
      codeShown = null;
    } else if (!growCode(growingTokens)) {
      const env = {};
      const html = growing.renderer.render(growingTokens, growing.options, env);
      if (env.math) {
        tail.innerHTML = clean(html);
        applyMathStyles(tail);
      } else tail.innerHTML = html;
      decorateCode(tail);
      codeShown = null;
    }
    if (probe) {
      probe.times.push(performance.now() - started);
      probe.covered.push(waiting);
    }
    waiting = 0;
  }

  return {
    stats,
    get text() {
      return text;
    },
    append(delta) {
      text += delta;
      waiting += 1;
      if (globalThis.__renderProbe) globalThis.__renderProbe.deltas += 1;
      if (!pending) {
        pending = true;
        schedule(render);
      }
    },
    // The whole text anew (a snapshot after a replay gap, or the text so far after a reload).
    reset(full) {
      text = full;
      frozen = 0;
      codeShown = null;
      done.replaceChildren();
      render();
    },
    renderNow: render,
    finish() {
      over = true;
      renderInto(element, text); // the same HTML a reload shows
    },
  };
}

// A stored reply: rendered once, with copy buttons.
export function renderInto(element, text) {
  show(element, renderMarkdown(text));
  // A reply stopped right after a heading's marker ("## ") leaves a heading with no words: it
  // would be announced as an empty heading, and reads as nothing.
  for (const heading of element.querySelectorAll("h1, h2, h3, h4, h5, h6")) {
    if (!heading.textContent.trim()) heading.remove();
  }
  element.classList.add("markdown");
}
