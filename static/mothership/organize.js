// Pin and Archive on a chat's page (its creator and the workspace's owners): pinned chats are
// listed first; archived ones leave the dashboard and the list (behind their Archived filter).
export function organize({ chatId, csrf, notice }) {
  const pinButton = document.getElementById("pin-chat");
  const archiveButton = document.getElementById("archive-chat");

  async function patch(body) {
    const response = await fetch(`/api/mothership/chats/${chatId}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.detail || `The server answered ${response.status}.`);
    return answer;
  }

  function showPinned(pinned) {
    if (!pinButton) return;
    pinButton.textContent = pinned ? "Unpin" : "Pin";
    pinButton.setAttribute("aria-pressed", String(pinned));
  }

  function showArchived(archived) {
    if (!archiveButton) return;
    archiveButton.textContent = archived ? "Unarchive" : "Archive";
    archiveButton.dataset.archived = String(archived);
  }

  async function setArchived(archived) {
    try {
      showArchived((await patch({ archived })).archived);
      notice(
        archived
          ? "Archived: it is out of the dashboard and the conversation list (under Archived there). Sending a message brings it back."
          : "Back in the dashboard and the conversation list."
      );
    } catch (err) {
      notice(`Could not ${archived ? "archive" : "unarchive"} the conversation: ${err.message}`);
    }
  }

  pinButton?.addEventListener("click", async () => {
    const pinned = pinButton.getAttribute("aria-pressed") !== "true";
    try {
      showPinned((await patch({ pinned })).pinned);
      notice(pinned ? "Pinned: listed first on the dashboard and in the list." : "Unpinned.");
    } catch (err) {
      notice(`Could not ${pinned ? "pin" : "unpin"} the conversation: ${err.message}`);
    }
  });
  archiveButton?.addEventListener("click", () => setArchived(archiveButton.dataset.archived !== "true"));

  return {
    // After Close: what it did, and Archive one click away (when it is not archived already).
    offerArchive(text) {
      const status = document.getElementById("composer-status");
      status.textContent = text;
      if (!archiveButton || archiveButton.dataset.archived === "true") return;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn--small";
      button.id = "archive-after-close";
      button.textContent = "Archive it too";
      button.addEventListener("click", () => setArchived(true));
      status.append(" ", button);
    },
  };
}
