// The replies of a chat page: each one's Markdown source and renderer, the figures under it
// (model, tokens, cost, duration), and its actions (Copy; Retry, Regenerate or Continue on the
// last one).
import { dollars } from "./live.js";
import { copyButton, renderInto, streamRenderer } from "./markdown.js";
import { showToolCalls } from "./toolcards.js";

// Each figure's name under a reply, and what it means (shown on hover).
const TOKENS = [
  ["input_tokens", "in", "Prompt tokens billed at the full input price"],
  ["cache_read_tokens", "cache read", "Prompt tokens read from the cache: billed at a tenth of the input price"],
  ["cache_write_tokens", "cache write", "Written to the cache: billed once (a little over the input price), then read at a tenth"],
  ["output_tokens", "out", "The reply's own tokens"],
];
const CONTINUABLE = ["cancelled", "interrupted", "failed"];

function readJson(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : {};
}

// "Local · 1,204 in · 0 cache read · 0 cache write · 200 out · $0.0031 · 4.1 s", as [text, help] parts.
export function figureParts(row, labels = {}) {
  const number = new Intl.NumberFormat();
  const approx = row.usage_estimated ? "≈" : "";
  const parts = [[labels[row.model] || row.model || "model unknown", "The model that wrote this reply"]];
  for (const [field, name, help] of TOKENS) parts.push([`${approx}${number.format(row.usage?.[field] ?? 0)} ${name}`, help]);
  parts.push([dollars(row.cost_usd), "What this reply cost"]);
  if (row.duration_ms !== null && row.duration_ms !== undefined) parts.push([`${(row.duration_ms / 1000).toFixed(1)} s`, "From Send to the reply's end"]);
  if (row.usage_estimated) parts.push(["(estimated: the model reported no usage)", ""]);
  return parts;
}

function showParts(meta, parts) {
  meta.replaceChildren();
  parts.forEach(([text, help], i) => {
    if (i) meta.append(i === parts.length - 1 && text.startsWith("(") ? " " : " · ");
    const span = document.createElement("span");
    span.textContent = text;
    if (help) span.title = help;
    meta.append(span);
  });
}

export function replies({ transcript, chatId, canContinue, onAgain, onCopied }) {
  const labels = readJson("model-labels");
  const figures = readJson("message-figures"); // message id → its row, as GET …/messages/<id> answers
  const sources = new Map(); // assistant message id → its Markdown text
  const renderers = new Map(); // assistant message id → its renderer while it streams

  const item = (id) => id && transcript.querySelector(`[data-message-id="${id}"]`);

  function foot(li) {
    let node = li.querySelector(".msg-foot");
    if (!node) {
      node = document.createElement("div");
      node.className = "msg-foot";
      node.innerHTML = '<p class="msg-meta"></p><div class="msg-actions"></div>';
      node.lastChild.append(copyButton("button-small msg-copy", "Copy this reply"));
      li.append(node);
    }
    return node;
  }

  function showFigures(id, row) {
    const li = item(id);
    if (!li || !row) return;
    figures[id] = row;
    showToolCalls(li, row.tool_calls); // as the seal saved them (a call the turn left open: how it ended)
    showParts(foot(li).querySelector(".msg-meta"), figureParts(row, labels));
  }

  async function loadFigures(id) {
    const response = await fetch(`/api/mothership/chats/${chatId}/messages/${id}`, { headers: { Accept: "application/json" } }).catch(() => null);
    if (response?.ok) showFigures(id, await response.json());
  }

  // A stored reply: rendered once, with its figures and its Copy.
  function stored(li, text) {
    const id = li.dataset.messageId;
    sources.set(id, text);
    renderInto(li.querySelector(".msg-content"), text);
    foot(li);
    if (figures[id]) showFigures(id, figures[id]);
  }

  function rendererFor(id, bubble) {
    let renderer = renderers.get(id);
    if (!renderer) {
      const content = bubble(id).querySelector(".msg-content");
      const start = sources.get(id) ?? content.textContent; // read before the renderer takes the element
      renderer = streamRenderer(content);
      renderer.reset(start);
      renderers.set(id, renderer);
    }
    return renderer;
  }

  // A new attempt at a reply: started over (its text goes) or continued (its text stays).
  function begin(id, { continued }) {
    const li = item(id);
    if (!li) return;
    renderers.delete(id);
    if (!continued) {
      sources.set(id, "");
      li.querySelector(".msg-tools")?.remove(); // the calls of the attempt before
    }
    for (const status of CONTINUABLE) li.classList.remove(`msg--${status}`);
    li.querySelector(".msg-status")?.remove();
    li.querySelector(".msg-meta")?.replaceChildren();
  }

  function finish(id, text) {
    const renderer = renderers.get(id);
    renderers.delete(id);
    const li = item(id);
    if (!li) return;
    const final = text ?? renderer?.text ?? sources.get(id) ?? "";
    sources.set(id, final);
    if (text === undefined && renderer) renderer.finish();
    else renderInto(li.querySelector(".msg-content"), final);
    foot(li);
    loadFigures(id);
  }

  // Retry (a failed reply), Regenerate, Continue (a stopped or interrupted one with text): on
  // the conversation's last message, when it is a reply and nothing streams.
  function refreshActions(busy) {
    for (const button of transcript.querySelectorAll(".msg-again")) button.remove();
    const last = transcript.lastElementChild;
    if (busy || !last?.classList.contains("msg--assistant")) return;
    const id = last.dataset.messageId;
    const failed = last.classList.contains("msg--failed");
    const actions = foot(last).querySelector(".msg-actions");
    const add = (label, action, help) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "button-small msg-again";
      button.dataset.action = action;
      button.textContent = label;
      button.title = help;
      button.addEventListener("click", () => onAgain(id, action));
      actions.append(button);
    };
    const stoppedEarly = CONTINUABLE.some((s) => last.classList.contains(`msg--${s}`));
    if (canContinue && stoppedEarly && (sources.get(id) || "").trim())
      add("Continue", "continue", "Go on from the text kept so far, in this same reply");
    add(failed ? "Retry" : "Regenerate", "regenerate", "Answer the same message again, from the start");
  }

  transcript.addEventListener("click", async (e) => {
    const button = e.target.closest?.(".msg-copy");
    if (!button) return;
    const id = button.closest(".msg")?.dataset.messageId;
    try {
      await navigator.clipboard.writeText(sources.get(id) ?? "");
      button.textContent = "Copied";
      onCopied?.();
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });

  return {
    source: (id) => sources.get(id) ?? "",
    stored,
    rendererFor,
    begin,
    finish,
    showFigures,
    refreshActions,
    // The chat's model changed: Continue is offered only where the new one can go on from a prefix.
    setCanContinue(value, busy) {
      canContinue = value;
      refreshActions(busy);
    },
  };
}
