// A reply's tool calls as cards inside it: the tool, how it ended and how long it took, and,
// unfolded, its arguments and its result. The same card live (built from the stream's events)
// and after a reload (from the reply's record): one function draws both. A result is untrusted
// text, shown as text (never parsed as HTML or Markdown).
const STATES = {
  running: "running",
  waiting: "waits for approval",
  ok: "done",
  error: "failed",
  cancelled: "stopped",
  denied: "denied",
  interrupted: "interrupted",
};

export function duration(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// Keys in one order, whatever the storage did to them (PostgreSQL's jsonb reorders an object's
// keys): the card reads the same live and after a reload.
function sorted(value) {
  if (Array.isArray(value)) return value.map(sorted);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, sorted(value[key])]));
}

function list(li) {
  let node = li.querySelector(".msg-tools");
  if (!node) {
    node = document.createElement("ol");
    node.className = "msg-tools";
    node.setAttribute("aria-label", "Tool calls");
    li.querySelector(".msg-content").before(node);
  }
  return node;
}

function stateText(card) {
  const status = card.dataset.status;
  const took = status === "running" && card.dataset.startedAt
    ? duration(Math.max(0, Date.now() - Number(card.dataset.startedAt)))
    : duration(card.dataset.durationMs === "" ? null : Number(card.dataset.durationMs));
  return took ? `${STATES[status] || status} · ${took}` : STATES[status] || status;
}

// A call's card in the reply ``li``, made or brought up to date from ``record``
// ({callId, tool, arguments, status, content, durationMs}; status "running" while it runs).
export function showToolCall(li, record) {
  const cards = list(li);
  let card = [...cards.children].find((c) => c.dataset.callId === record.callId);
  if (!card) {
    card = document.createElement("li");
    card.className = "tool-card";
    card.dataset.callId = record.callId;
    card.innerHTML =
      '<details><summary><span class="tool-name"></span> <span class="tool-state"></span></summary>' +
      '<div class="tool-body"><p class="tool-label">Arguments</p><pre class="tool-arguments"></pre>' +
      '<p class="tool-label">Result</p><pre class="tool-result"></pre></div></details>';
    cards.append(card);
  }
  if (record.tool !== undefined) card.querySelector(".tool-name").textContent = record.tool;
  if (record.arguments !== undefined) card.querySelector(".tool-arguments").textContent = JSON.stringify(sorted(record.arguments), null, 2);
  const status = record.status || card.dataset.status || "running";
  if (status === "running" && !card.dataset.startedAt) card.dataset.startedAt = String(record.startedAt ?? Date.now());
  card.dataset.status = status;
  card.className = `tool-card tool-card--${status}`;
  card.dataset.durationMs = record.durationMs ?? "";
  const result = card.querySelector(".tool-result");
  result.textContent = record.content ?? result.textContent;
  result.previousElementSibling.hidden = result.hidden = !result.textContent;
  card.querySelector(".tool-state").textContent = stateText(card);
  return card;
}

export function showToolCalls(li, records) {
  for (const record of records || []) showToolCall(li, record);
}

// Running calls say how long they have run, every second.
setInterval(() => {
  for (const card of document.querySelectorAll(".tool-card--running, .tool-card--waiting"))
    card.querySelector(".tool-state").textContent = stateText(card);
}, 1000);
