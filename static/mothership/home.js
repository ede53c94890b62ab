// Dashboard: tiles follow their chats live over /ws/ (a workspace subscription), warming badges
// count down, and the list is re-read now and then so a lost push never leaves a tile stale.
// A tile's markup and labels live in one place, the server's templates/mothership/_tile.html:
// a pushed tile carries it rendered ("html"), and a re-read takes it from the page itself.
import { importForm } from "./imports.js";
import { countdown, openSocket, relativeTime } from "./live.js";
import { arrowKeys, findShortcut, serverSearch } from "./search.js";
import { spendPanel } from "./spend.js";
import { pendingUndo, trashChat, undoNotice } from "./trash.js";

const root = document.getElementById("dashboard");
const workspaceId = root.dataset.workspace;
const list = document.getElementById("tiles");
const statusLine = document.getElementById("dashboard-status");
const REREAD_MS = 15000;
// The dashboard shows a page of tiles, newest first; only the first page takes in new ones.
const firstPage = root.dataset.firstPage !== "false";
const spend = document.getElementById("spend");
spendPanel(spend);
importForm(document.getElementById("import-form"));

// Search the workspace's titles and messages: Ctrl+K (or "/") goes to the box, Enter opens the
// first result, the arrow keys move through them, Esc clears.
const searchForm = document.getElementById("workspace-search");
if (searchForm) {
  const input = document.getElementById("workspace-search-input");
  const found = document.getElementById("workspace-search-results");
  const server = serverSearch({
    workspaceId,
    list: found,
    status: document.getElementById("workspace-search-status"),
    words: (n) => (n === 1 ? "1 result" : `${n} results`),
    none: "Nothing matches.",
  });
  input.addEventListener("input", () => server.search(input.value));
  searchForm.addEventListener("submit", (e) => {
    e.preventDefault();
    server.first()?.click();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { input.value = ""; server.search(""); input.blur(); }
  });
  arrowKeys(input, found);
  findShortcut(() => { input.focus(); input.select(); });
}

function tileFor(chatId) {
  return list.querySelector(`.tile[data-chat-id="${chatId}"]`);
}

// Put a server-rendered tile in place of its old self, or first in the list when it is new
// (on the first page; an older page only keeps its own tiles up to date).
function place(fresh, { pushed = false } = {}) {
  const old = tileFor(fresh.dataset.chatId);
  // A pushed tile is rendered for the whole workspace, not for this reader: whether a reply is
  // new to them stays this page's (a re-read brings the server's answer). A turn that ends while
  // they look at the dashboard is new to them.
  if (pushed && old && (old.dataset.unread === "true" || (["streaming", "waiting"].includes(old.dataset.state) && !["streaming", "waiting"].includes(fresh.dataset.state)))) {
    fresh.dataset.unread = "true";
    fresh.querySelector(".tile-unread").hidden = false;
  }
  // A reply ended: what it cost is in the ledger now.
  if (old && old.dataset.state === "streaming" && fresh.dataset.state !== "streaming") spend?.dispatchEvent(new Event("spend:refresh"));
  if (old) old.replaceWith(fresh);
  else if (firstPage) {
    list.prepend(fresh);
    document.getElementById("no-tiles")?.remove();
  }
  paint(fresh);
}

function fromHtml(html) {
  const template = document.createElement("template");
  template.innerHTML = html.trim();
  return template.content.firstElementChild;
}

function renderBadge(li, warming) {
  const badge = li.querySelector(".tile-warming");
  badge.dataset.enabled = warming?.enabled ? "true" : "false";
  badge.dataset.nextWarmAt = warming?.nextWarmAt ?? "";
  badge.hidden = !warming?.enabled;
  paint(li);
}

// The parts that change with the clock: the countdown and "5 minutes ago".
function paint(scope) {
  for (const badge of scope.querySelectorAll(".tile-warming[data-enabled=true]")) {
    badge.textContent = `warming · next ${countdown(badge.dataset.nextWarmAt)}`;
  }
  for (const time of scope.querySelectorAll(".tile-time[datetime]")) time.textContent = relativeTime(time.getAttribute("datetime"));
  // A running tool: how long it has run, by the second.
  for (const since of scope.querySelectorAll(".tile-state [data-since]"))
    since.textContent = `${Math.max(0, Math.floor((Date.now() - Number(since.dataset.since)) / 1000))} s`;
}

function drop(chatId) {
  tileFor(chatId)?.remove();
}

// A tile's Delete: the tile goes at once; Undo brings it back (the restore pushes it, and a re-read too).
const csrf = document.querySelector("input[name=csrfmiddlewaretoken]")?.value;
list.addEventListener("click", async (event) => {
  const button = event.target.closest(".tile-delete");
  if (!button) return;
  const chatId = button.dataset.chatId;
  const title = tileFor(chatId)?.querySelector(".tile-title")?.textContent.trim();
  button.disabled = true;
  try {
    const answer = await trashChat(chatId, csrf);
    if (!answer.ok) { statusLine.textContent = answer.detail; button.disabled = false; return; }
    drop(chatId);
    undoNotice({ chatId, title, csrf, onRestored: reread });
  } catch (err) {
    statusLine.textContent = "Could not reach the server to delete the conversation.";
    button.disabled = false;
  }
});
pendingUndo({ csrf, onRestored: reread });

async function reread() {
  if (!workspaceId) return;
  try {
    const response = await fetch(window.location.pathname + window.location.search, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    // Oldest first, so that tiles new to this page end up first, in the server's order.
    for (const fresh of [...page.querySelectorAll("#tiles > .tile")].reverse()) place(document.adoptNode(fresh));
    statusLine.textContent = "";
  } catch (err) {
    statusLine.textContent = "Offline: the tiles may be out of date.";
  }
}

if (workspaceId) {
  openSocket({
    onOpen: (socket) => {
      socket.send(JSON.stringify({ type: "subscribe", workspaceId }));
      reread(); // anything that changed while we were away
    },
    onMessage: (message) => {
      if (message.type === "tile" && message.workspaceId === workspaceId) place(fromHtml(message.html), { pushed: true });
      else if (message.type === "tile.removed" && message.workspaceId === workspaceId) drop(message.conversationId);
      else if (message.type === "tile.warming" && message.workspaceId === workspaceId) {
        const li = tileFor(message.conversationId);
        if (li) renderBadge(li, message.warming);
      }
      else if (message.type === "error") statusLine.textContent = message.message;
    },
  });
  setInterval(reread, REREAD_MS);
  // A yellow tile is re-checked more often: if its worker died, the lock's expiry shows here.
  setInterval(() => { if (list.querySelector('.tile[data-state="streaming"], .tile[data-state="waiting"]')) reread(); }, Number(root.dataset.livenessPollMs) || 5000);
}
setInterval(() => paint(list), 1000);
paint(list);
