// The chat page's list of the workspace's conversations: live state dots (the workspace's tile
// pushes, on the page's socket), the current one marked, "new" on one whose reply ended unseen,
// a search box ("/" or Ctrl+K focuses it) that filters the titles at once and, below them, finds
// message text on the server; collapsed on a phone. The side sections remember whether they were open.
import { arrowKeys, findShortcut, serverSearch } from "./search.js";

// What a state reads as in the list, as the server writes it (_chat_link.html).
const STATE_WORDS = { idle: "", completed: "", waiting: "needs you" };

const PHONE = "(max-width: 760px)";

export function conversationList({ currentChatId }) {
  const nav = document.getElementById("chat-nav");
  const list = document.getElementById("chat-links");
  const search = document.getElementById("chat-search");
  const empty = document.getElementById("chat-search-empty");
  const found = document.getElementById("chat-search-results");
  const workspaceId = list?.dataset.workspace;
  if (!list) return { subscribe() {}, onMessage: () => false };
  // Titles the list shows are filtered here; the server adds message text (and titles not listed).
  const listed = (result) => !result.message && !link(result.chat)?.hidden;
  const server = serverSearch({
    workspaceId,
    list: found,
    status: document.getElementById("chat-search-status"),
    skip: listed,
    words: (n) => (n === 1 ? "1 message matches" : `${n} messages match`),
    none: "No message matches.",
  });
  arrowKeys(search, found);

  if (window.matchMedia(PHONE).matches) nav.open = false;
  for (const section of document.querySelectorAll("details.side-section")) {
    const key = `mothership:${section.id}:open`;
    const saved = localStorage.getItem(key);
    if (saved !== null) section.open = saved === "true";
    section.addEventListener("toggle", () => localStorage.setItem(key, String(section.open)));
  }

  function filter() {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const li of list.children) {
      const title = li.querySelector(".chat-link-title").textContent.toLowerCase();
      li.hidden = !words.every((w) => title.includes(w));
      if (!li.hidden) shown += 1;
    }
    empty.hidden = shown > 0;
  }
  search.addEventListener("input", () => {
    filter();
    server.search(search.value);
  });
  search.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { search.value = ""; filter(); server.search(""); search.blur(); }
    else if (e.key === "Enter") {
      const first = [...list.children].find((li) => !li.hidden)?.querySelector("a") || server.first();
      if (first) { e.preventDefault(); first.click(); }
    }
  });
  findShortcut(() => {
    nav.open = true;
    search.focus();
    search.select();
  });

  function link(conversationId) {
    return list.querySelector(`.chat-link[data-chat-id="${conversationId}"]`);
  }

  // A tile push: the state dot and the title follow; a conversation new to the list goes first.
  function onTile(tile) {
    let li = link(tile.conversationId);
    if (!li) {
      li = document.createElement("li");
      li.dataset.chatId = tile.conversationId;
      li.innerHTML = '<a><span class="dot" aria-hidden="true"></span><span class="chat-link-title"></span>'
        + '<span class="chat-link-unread badge badge--accent" title="A reply finished since you last opened this conversation" hidden>new</span>'
        + '<span class="chat-link-state"></span></a>';
      li.querySelector("a").href = `/chats/${tile.conversationId}/`;
      list.prepend(li);
    }
    // A reply of another conversation that ends while this page is open is new to its reader (the
    // server keeps the answer for the next page: the reader has not opened that conversation).
    if (tile.conversationId !== currentChatId && ["streaming", "waiting"].includes(li.dataset.state) && !["streaming", "waiting"].includes(tile.state)) {
      li.dataset.unread = "true";
    }
    li.querySelector(".chat-link-unread").hidden = li.dataset.unread !== "true";
    li.className = `chat-link chat-link--${tile.state}`;
    li.dataset.state = tile.state;
    li.querySelector(".chat-link-title").textContent = tile.title;
    li.querySelector(".chat-link-state").textContent = STATE_WORDS[tile.state] ?? tile.state;
    if (tile.conversationId === currentChatId) li.querySelector("a").setAttribute("aria-current", "page");
    filter();
  }

  return {
    subscribe(socket) {
      if (workspaceId) socket.send(JSON.stringify({ type: "subscribe", workspaceId }));
    },
    // True when the message was the list's.
    onMessage(message) {
      if (message.workspaceId !== workspaceId) return false;
      if (message.type === "tile") onTile(message);
      // Moved to the trash: gone from the list (this page's own chat stays: its page says so on use).
      if (message.type === "tile.removed" && message.conversationId !== currentChatId) link(message.conversationId)?.remove();
      return ["tile", "tile.warming", "tile.removed"].includes(message.type);
    },
  };
}
