// Dashboard: tiles follow their chats live over /ws/ (a workspace subscription), warming badges
// count down, and the list is re-read now and then so a lost push never leaves a tile stale.
import { countdown, openSocket, relativeTime } from "./live.js";

const root = document.getElementById("dashboard");
const workspaceId = root.dataset.workspace;
const list = document.getElementById("tiles");
const statusLine = document.getElementById("dashboard-status");
const STATE_LABEL = { interrupted: "interrupted — partial reply kept" };
const REREAD_MS = 15000;

function tileFor(chatId) {
  return list.querySelector(`.tile[data-chat-id="${chatId}"]`);
}

function newTile(chatId) {
  const li = document.createElement("li");
  li.className = "tile";
  li.dataset.chatId = chatId;
  li.innerHTML = `<a><span class="tile-title"></span><span class="tile-state"></span><span class="tile-preview"></span>
    <span class="tile-foot"><time class="tile-time"></time><span class="tile-warming" hidden>warming</span></span></a>`;
  li.querySelector("a").href = `/chats/${chatId}/`;
  list.prepend(li);
  document.getElementById("no-tiles")?.remove();
  return li;
}

// One tile from a pushed "tile" message or a row of the list API (same fields, two spellings).
function renderBadge(li, warming) {
  const badge = li.querySelector(".tile-warming");
  badge.dataset.enabled = warming?.enabled ? "true" : "false";
  badge.dataset.nextWarmAt = warming?.nextWarmAt ?? "";
  badge.hidden = !warming?.enabled;
}

function render(tile) {
  const chatId = tile.conversationId || tile.id;
  const li = tileFor(chatId) || newTile(chatId);
  const state = tile.state;
  li.className = `tile tile--${state}`;
  li.dataset.state = state;
  li.dataset.liveness = tile.liveness;
  li.querySelector(".tile-title").textContent = tile.title;
  li.querySelector(".tile-state").textContent = (STATE_LABEL[state] || state) + (tile.liveness === "unknown" ? " (liveness unknown)" : "");
  const preview = tile.lastMessage ?? tile.last_message ?? "";
  li.querySelector(".tile-preview").textContent = preview.length > 120 ? `${preview.slice(0, 119)}…` : preview;
  const time = li.querySelector(".tile-time");
  time.setAttribute("datetime", tile.updatedAt || tile.updated_at);
  time.textContent = relativeTime(time.getAttribute("datetime"));
  if ("warming" in tile) renderBadge(li, tile.warming);
}

function tick() {
  for (const badge of list.querySelectorAll(".tile-warming[data-enabled=true]")) {
    badge.textContent = `warming · next ${countdown(badge.dataset.nextWarmAt)}`;
  }
  for (const time of list.querySelectorAll(".tile-time[datetime]")) time.textContent = relativeTime(time.getAttribute("datetime"));
}

async function reread() {
  if (!workspaceId) return;
  try {
    const response = await fetch(`/api/mothership/chats?workspace=${workspaceId}`, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    for (const row of await response.json()) render(row);
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
      if (message.type === "tile" && message.workspaceId === workspaceId) render(message);
      else if (message.type === "tile.warming" && message.workspaceId === workspaceId) {
        const li = tileFor(message.conversationId);
        if (li) renderBadge(li, message.warming);
      }
      else if (message.type === "error") statusLine.textContent = message.message;
    },
  });
  setInterval(reread, REREAD_MS);
  // A yellow tile is re-checked more often: if its worker died, the lock's expiry shows here.
  setInterval(() => { if (list.querySelector('.tile[data-state="streaming"]')) reread(); }, Number(root.dataset.livenessPollMs) || 5000);
}
setInterval(tick, 1000);
tick();
