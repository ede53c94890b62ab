// Import (the dashboard's form): the file goes as multipart to POST /api/mothership/workspaces/<id>/import;
// on success the dashboard's first page is read again to show the new tiles, with how many came in;
// a refused file is named in words (the server says what is wrong and where) and nothing was imported.
const NOTICE = "mothership:imported";

function say(status, text, { error = false } = {}) {
  status.textContent = text;
  status.dataset.error = error ? "true" : "false";
}

function summary(body) {
  const count = body.chats?.length ?? 0;
  const text = `Imported ${count} conversation${count === 1 ? "" : "s"}.`;
  return body.notes?.length ? `${text} ${body.notes.join(" ")}` : text;
}

export function importForm(form) {
  if (!form) return;
  const status = form.querySelector("#import-status");
  const button = form.querySelector("button[type=submit]");
  const pending = sessionStorage.getItem(NOTICE);
  sessionStorage.removeItem(NOTICE);
  if (pending) say(status, pending);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    say(status, "Importing…");
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value, Accept: "application/json" },
      });
      const body = await response.json().catch(() => ({}));
      if (response.status === 201) {
        sessionStorage.setItem(NOTICE, summary(body));
        window.location.assign(`/?workspace=${form.dataset.workspace}`);
        return;
      }
      say(status, `Not imported: ${body.detail || `the server answered ${response.status}.`}`, { error: true });
    } catch (err) {
      say(status, "Could not reach the server; nothing was imported.", { error: true });
    }
    button.disabled = false;
  });
}
