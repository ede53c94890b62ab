// Share links: Share makes a public, read-only copy of the conversation as it is now; the side
// panel lists the chat's active links, each with Copy and (for its maker, the chat's creator and
// the owners) Revoke, after which the link answers "not found".
export function sharePanel({ chatId, csrf }) {
  const button = document.getElementById("share-chat");
  const section = document.getElementById("share-section");
  const list = document.getElementById("share-links");
  const status = document.getElementById("share-status");
  const summary = document.getElementById("share-summary");
  if (!button || !list) return;
  const api = `/api/mothership/chats/${chatId}/share`;
  const headers = { "X-CSRFToken": csrf, Accept: "application/json" };

  function recount() {
    const n = list.children.length;
    summary.textContent = n ? `${n} link${n === 1 ? "" : "s"}` : "none";
  }

  function small(className, text) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = `button-small ${className}`;
    b.textContent = text;
    return b;
  }

  // The same markup as templates/mothership/_share_link.html.
  function item(share) {
    const li = document.createElement("li");
    li.className = "share-link";
    li.dataset.token = share.token;
    const link = document.createElement("a");
    link.className = "share-url";
    link.href = share.url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = share.url;
    const when = document.createElement("span");
    when.className = "share-when";
    const time = document.createElement("time");
    time.dateTime = share.created_at;
    time.textContent = "just now";
    when.append("made ", time, share.created_by ? ` by ${share.created_by}` : "");
    const actions = document.createElement("span");
    actions.className = "share-actions";
    actions.append(small("share-copy", "Copy"));
    if (share.can_revoke) actions.append(" ", small("share-revoke", "Revoke"));
    li.append(link, " ", when, " ", actions);
    return li;
  }

  async function detail(response, fallback) {
    return (await response.json().catch(() => ({}))).detail || `${fallback} (${response.status}).`;
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    section.open = true;
    try {
      const response = await fetch(api, { method: "POST", headers });
      if (!response.ok) {
        status.textContent = await detail(response, "No link was made");
        return;
      }
      const li = item(await response.json());
      list.prepend(li);
      recount();
      status.textContent = "Link made: anyone with it can read this conversation as it is now.";
      li.querySelector(".share-copy").focus();
    } catch {
      status.textContent = "Could not reach the server; no link was made.";
    } finally {
      button.disabled = false;
    }
  });

  list.addEventListener("click", async (e) => {
    const li = e.target.closest(".share-link");
    if (!li) return;
    const copy = e.target.closest(".share-copy");
    if (copy) {
      try {
        await navigator.clipboard.writeText(li.querySelector(".share-url").href);
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Copy failed";
      }
      setTimeout(() => (copy.textContent = "Copy"), 1500);
      return;
    }
    const revoke = e.target.closest(".share-revoke");
    if (!revoke) return;
    revoke.disabled = true;
    try {
      const response = await fetch(`${api}?token=${encodeURIComponent(li.dataset.token)}`, { method: "DELETE", headers });
      if (response.ok || response.status === 404) {
        li.remove();
        recount();
        status.textContent = "Link revoked: it no longer opens.";
        button.focus();
      } else {
        status.textContent = await detail(response, "The link was not revoked");
        revoke.disabled = false;
      }
    } catch {
      status.textContent = "Could not reach the server; the link still works.";
      revoke.disabled = false;
    }
  });
}
