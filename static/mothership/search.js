// Search of a workspace's titles and message text on the server (GET /api/mothership/search),
// as you type (debounced): results are a list of links that open the chat at the message.
// A snippet is the server's escaped HTML with <mark> around the matches; it is rebuilt here from
// its text and its marks only, so nothing in a message can become markup.
const DEBOUNCE_MS = 250;

// Entities back to text: a <textarea>'s content is never parsed as elements.
function decode(html) {
  const box = document.createElement("textarea");
  box.innerHTML = html;
  return box.value;
}

export function snippetNodes(snippet) {
  const nodes = [];
  let mark = null;
  for (const part of snippet.split(/(<mark>|<\/mark>)/)) {
    if (part === "<mark>") mark = document.createElement("mark");
    else if (part === "</mark>") { if (mark) nodes.push(mark); mark = null; }
    else if (part) (mark ? mark.append(decode(part)) : nodes.push(document.createTextNode(decode(part))));
  }
  if (mark) nodes.push(mark);
  return nodes;
}

export function resultHref(result) {
  return result.message ? `/chats/${result.chat}/?message=${result.message}` : `/chats/${result.chat}/`;
}

function render(list, results, { skip }) {
  list.replaceChildren();
  for (const result of results) {
    if (skip?.(result)) continue;
    const li = document.createElement("li");
    li.className = "search-result";
    const a = document.createElement("a");
    a.href = resultHref(result);
    const title = document.createElement("span");
    title.className = "search-result-title";
    title.textContent = result.title;
    const snippet = document.createElement("span");
    snippet.className = "search-result-snippet";
    snippet.append(...snippetNodes(result.snippet));
    a.append(title, snippet);
    li.append(a);
    list.append(li);
  }
  return list.children.length;
}

// ``list``: the <ul> the results go in; ``status``: a live region saying how many; ``skip``:
// results not to show (the chat page leaves out titles its own list already shows).
export function serverSearch({ workspaceId, list, status, skip, words = (n) => `${n} found`, none = "Nothing found." }) {
  let timer = null;
  let controller = null;
  let wanted = "";

  async function run(q) {
    controller?.abort();
    controller = new AbortController();
    try {
      const params = new URLSearchParams({ workspace: workspaceId, q });
      const response = await fetch(`/api/mothership/search?${params}`, { headers: { Accept: "application/json" }, signal: controller.signal });
      const body = await response.json().catch(() => ({}));
      if (q !== wanted) return;
      if (!response.ok) {
        list.replaceChildren();
        status.textContent = response.status === 400 ? body.detail?.replace(/^q: /, "") || "" : "Search is unavailable; try again shortly.";
        return;
      }
      const shown = render(list, body.results || [], { skip });
      status.textContent = shown ? words(shown) : none;
    } catch (err) {
      if (err.name !== "AbortError") status.textContent = "Could not reach the server to search.";
    }
  }

  return {
    search(text) {
      wanted = text.trim();
      clearTimeout(timer);
      if (!wanted) {
        controller?.abort();
        list.replaceChildren();
        status.textContent = "";
        return;
      }
      timer = setTimeout(() => run(wanted), DEBOUNCE_MS);
    },
    first: () => list.querySelector("a"),
  };
}

// Ctrl+K (⌘K) anywhere, or "/" outside a text field: ``onFind``.
export function findShortcut(onFind) {
  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest?.("input, textarea, select, [contenteditable=true]");
    const slash = e.key === "/" && !typing && !e.ctrlKey && !e.metaKey && !e.altKey;
    const find = (e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k";
    if (!slash && !find) return;
    e.preventDefault();
    onFind();
  });
}

// Arrow keys move between the search box and its result links.
export function arrowKeys(input, list) {
  const links = () => [...list.querySelectorAll("a")];
  input.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" && links().length) { e.preventDefault(); links()[0].focus(); }
  });
  list.addEventListener("keydown", (e) => {
    const all = links();
    const at = all.indexOf(document.activeElement);
    if (e.key === "ArrowDown" && at < all.length - 1) { e.preventDefault(); all[at + 1].focus(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); (at > 0 ? all[at - 1] : input).focus(); }
    else if (e.key === "Escape") { e.preventDefault(); input.focus(); }
  });
}
