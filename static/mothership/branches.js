// Versions of a message: "‹ 2 / 3 ›" under each message with siblings (an edited question, a
// regenerated reply) shows another branch; Edit on a question makes a new version and answers it.
export function branches({ transcript, chatId, csrf, notice, onEdited }) {
  const siblingsOf = (li) => (li.dataset.siblings || li.dataset.messageId || "").split(" ").filter(Boolean);
  // The message's body: its text, and its files under it; versions and Edit come after.
  const bodyEnd = (li) => li.querySelector(".msg-files") || li.querySelector(".msg-content");

  async function send(method, url, body) {
    const response = await fetch(url, {
      method,
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: JSON.stringify(body),
    });
    return { response, body: await response.json().catch(() => ({})) };
  }

  async function show(messageId) {
    try {
      const { response, body } = await send("PATCH", `/api/mothership/chats/${chatId}`, { leaf_id: messageId });
      if (!response.ok) return notice(body.detail || body.leaf_id?.[0] || `Could not show that version (${response.status}).`);
      window.location.reload(); // the whole branch below it changes
    } catch {
      notice("Could not reach the server to show that version.");
    }
  }

  function pager(li, busy) {
    li.querySelector(".msg-versions")?.remove();
    const ids = siblingsOf(li);
    if (ids.length < 2) return;
    const at = ids.indexOf(li.dataset.messageId);
    const nav = document.createElement("span");
    nav.className = "msg-versions";
    nav.setAttribute("role", "group");
    nav.setAttribute("aria-label", "Versions of this message");
    const step = (label, name, to) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn--small button-small";
      button.textContent = label;
      button.setAttribute("aria-label", name);
      button.disabled = busy || to < 0 || to >= ids.length;
      button.addEventListener("click", () => show(ids[to]));
      return button;
    };
    const where = document.createElement("span");
    where.textContent = `${at + 1} / ${ids.length}`;
    nav.append(step("‹", "Previous version", at - 1), where, step("›", "Next version", at + 1));
    bodyEnd(li).after(nav);
  }

  function editor(li) {
    if (li.querySelector(".msg-edit-form")) return;
    const content = li.querySelector(".msg-content");
    const form = document.createElement("form");
    form.className = "msg-edit-form";
    form.innerHTML =
      '<label class="visually-hidden">Edit your message</label><textarea rows="3" required></textarea>' +
      '<div class="msg-actions"><button type="submit" class="btn btn--primary btn--small">Save and send</button>' +
      '<button type="button" class="button-small msg-edit-cancel">Cancel</button></div>';
    const area = form.querySelector("textarea");
    area.id = `edit-${li.dataset.messageId}`;
    form.querySelector("label").htmlFor = area.id;
    area.value = content.textContent;
    content.hidden = true;
    content.after(form);
    area.focus();
    const close = () => { form.remove(); content.hidden = false; };
    form.querySelector(".msg-edit-cancel").addEventListener("click", close);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = area.value.trim();
      if (!text) return;
      form.querySelector("button[type=submit]").disabled = true;
      try {
        const url = `/api/mothership/chats/${chatId}/messages/${li.dataset.messageId}/edit`;
        const { response, body } = await send("POST", url, { content: text });
        if (!response.ok) {
          form.querySelector("button[type=submit]").disabled = false;
          return notice(body.detail || body.content?.[0] || `Could not send the edit (${response.status}).`);
        }
        const siblings = [...siblingsOf(li), body.user_message_id];
        // The edited question and what followed it stay as a branch; the new version follows.
        for (let node = li; node; ) { const next = node.nextElementSibling; node.remove(); node = next; }
        onEdited(text, body, siblings.join(" "));
      } catch {
        form.querySelector("button[type=submit]").disabled = false;
        notice("Could not reach the server; the edit was not sent.");
      }
    });
  }

  function refresh(busy) {
    for (const li of transcript.querySelectorAll(".msg")) {
      pager(li, busy);
      li.querySelector(".msg-edit")?.remove();
      if (busy || !li.classList.contains("msg--user") || !li.dataset.messageId) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn--small button-small msg-edit";
      button.textContent = "Edit";
      button.title = "Change this message and answer it again (the old version stays, ‹ › switches)";
      button.addEventListener("click", () => editor(li));
      (li.querySelector(".msg-versions") || bodyEnd(li)).after(button);
    }
  }

  return {
    refresh,
    // Regenerate answered in a new version: the reply's element now stands for it.
    versionAdded(oldId, newId) {
      const li = transcript.querySelector(`[data-message-id="${oldId}"]`);
      if (!li) return;
      li.dataset.siblings = [...siblingsOf(li), newId].join(" ");
      li.dataset.messageId = newId;
    },
  };
}
