// What the chat's next turns use: its model (the picker, when the deployment offers several) and
// its system prompt (a side section). A turn already running keeps its own of both.

async function patchChat(chatId, csrf, fields) {
  const response = await fetch(`/api/mothership/chats/${chatId}`, {
    method: "PATCH",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
    body: JSON.stringify(fields),
  }).catch(() => null);
  const body = response ? await response.json().catch(() => ({})) : {};
  return { ok: Boolean(response?.ok), body };
}

// The first message of a DRF 400: {"detail": …} or {"field": ["…"]}.
function problem(body, fallback) {
  if (body.detail) return body.detail;
  const first = Object.values(body)[0];
  return (Array.isArray(first) ? first[0] : first) || fallback;
}

export function chatSettings({ chatId, csrf, notice, onModelChanged }) {
  const picker = document.getElementById("chat-model");
  if (picker) {
    picker.dataset.saved = picker.value;
    picker.addEventListener("change", async () => {
      const { ok, body } = await patchChat(chatId, csrf, { model: picker.value });
      if (!ok) {
        notice(problem(body, "Could not change the model; try again."));
        picker.value = picker.dataset.saved || picker.value;
        return;
      }
      picker.dataset.saved = body.model;
      onModelChanged(picker.selectedOptions[0].dataset.prefill === "true");
      notice(`Next replies use ${picker.selectedOptions[0].textContent}.`);
    });
  }

  toolsPicker(chatId, csrf);
  const form = document.getElementById("system-form");
  if (!form) return;
  const box = document.getElementById("system-prompt");
  const summary = document.getElementById("system-summary");
  const status = document.getElementById("system-status");
  let saved = box.value;
  const describe = () => (summary.textContent = saved ? "on" : "none");
  const dirty = () => (status.textContent = box.value.trim() === saved ? "" : "Not saved yet");
  box.addEventListener("input", dirty);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.textContent = "Saving…";
    const { ok, body } = await patchChat(chatId, csrf, { system_prompt: box.value });
    if (!ok) {
      status.textContent = problem(body, "Could not save; try again.");
      return;
    }
    saved = body.system_prompt;
    box.value = saved;
    describe();
    status.textContent = saved ? "Saved: the next replies follow it." : "Removed: the next replies have none.";
  });
  describe();
}

// The chat's tools: a server's "All its tools" (``<server>.*``) or some of them, saved together.
function toolsPicker(chatId, csrf) {
  const form = document.getElementById("tools-form");
  if (!form) return;
  const status = document.getElementById("tools-status");
  const summary = document.getElementById("tools-summary");
  const boxes = () => [...form.querySelectorAll("input[name=tool]")];
  const chosen = () => boxes().filter((box) => box.checked && !box.disabled).map((box) => box.value);
  form.addEventListener("change", (e) => {
    const box = e.target;
    if (box.dataset.all === "true")
      for (const one of box.closest("fieldset").querySelectorAll("input[name=tool]:not([data-all])")) {
        one.disabled = box.checked;
        if (box.checked) one.checked = true;
      }
    status.textContent = "Not saved yet";
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    status.textContent = "Saving…";
    const { ok, body } = await patchChat(chatId, csrf, { tools: chosen() });
    if (!ok) {
      status.textContent = problem(body, "Could not save; try again.");
      return;
    }
    const count = body.tools?.length ?? chosen().length;
    summary.textContent = count ? "on" : "none";
    status.textContent = count ? "Saved: the next replies may call them." : "Saved: the next replies call no tool.";
  });
}
