// The trash: Delete (a chat page's button, a tile's) moves a chat to the trash at once, with no
// confirm; a notice "Moved to trash. Undo" stays UNDO_MS, and Undo restores it. A chat deleted from
// its own page is announced on the dashboard it goes back to (sessionStorage), Undo included.
const UNDO_MS = 10000;
const PENDING = "mothership:trashed";

export async function trashChat(chatId, csrf) {
  const response = await fetch(`/api/mothership/chats/${chatId}`, { method: "DELETE", headers: { "X-CSRFToken": csrf } });
  if (response.status === 204) return { ok: true };
  return { ok: false, detail: (await response.json().catch(() => ({}))).detail || `Delete failed (${response.status}).` };
}

async function restoreChat(chatId, csrf) {
  const response = await fetch(`/api/mothership/chats/${chatId}/restore`, { method: "POST", headers: { "X-CSRFToken": csrf } });
  if (response.ok) return { ok: true };
  return { ok: false, detail: (await response.json().catch(() => ({}))).detail || `Restore failed (${response.status}).` };
}

// Shows the notice; onRestored runs once Undo brought the chat back.
export function undoNotice({ chatId, title, csrf, onRestored, ms = UNDO_MS }) {
  document.getElementById("undo-notice")?.remove();
  const box = document.createElement("div");
  box.id = "undo-notice";
  box.className = "toast undo-notice";
  box.setAttribute("role", "status");
  const text = document.createElement("span");
  text.textContent = title ? `“${title}” moved to trash.` : "Moved to trash.";
  const undo = document.createElement("button");
  undo.type = "button";
  undo.className = "undo-button";
  undo.textContent = "Undo";
  box.append(text, " ", undo);
  document.body.append(box);
  const timer = setTimeout(() => box.remove(), ms);
  undo.addEventListener("click", async () => {
    undo.disabled = true;
    clearTimeout(timer);
    sessionStorage.removeItem(PENDING);
    try {
      const answer = await restoreChat(chatId, csrf);
      text.textContent = answer.ok ? "Restored." : answer.detail;
      undo.remove();
      if (answer.ok) onRestored?.();
    } catch (err) {
      text.textContent = "Could not reach the server; the chat is still in the trash.";
    }
    setTimeout(() => box.remove(), 3000);
  });
  undo.focus();
}

// From a chat's own page: the chat is gone, so the dashboard shows the notice.
export function rememberTrashed({ chatId, title }) {
  sessionStorage.setItem(PENDING, JSON.stringify({ chatId, title, until: Date.now() + UNDO_MS }));
}

export function pendingUndo({ csrf, onRestored }) {
  const raw = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  if (!raw) return;
  try {
    const { chatId, title, until } = JSON.parse(raw);
    if (until > Date.now()) undoNotice({ chatId, title, csrf, onRestored, ms: until - Date.now() });
  } catch (err) {
    // a value from another version of the page: nothing to undo
  }
}
