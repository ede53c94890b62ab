// The keyboard shortcut list: "?" outside a text field (or its button) opens it; Esc, Close or a
// click beside it closes it, and the focus goes back where it was.
const dialog = document.getElementById("shortcuts");
const opener = document.getElementById("shortcuts-open");
let returnTo = null;

function open() {
  if (dialog.open || document.querySelector("dialog[open]")) return; // one dialog at a time
  returnTo = document.activeElement;
  dialog.showModal();
}

if (dialog) {
  opener?.addEventListener("click", open);
  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest?.("input, textarea, select, [contenteditable=true], [contenteditable='']");
    if (e.key !== "?" || typing || e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    e.preventDefault();
    open();
  });
  // Esc here closes the list, and only that: the chat page's Esc (stop the reply) never sees it.
  dialog.addEventListener("keydown", (e) => { if (e.key === "Escape") e.stopPropagation(); });
  dialog.addEventListener("click", (e) => {
    const box = dialog.getBoundingClientRect();
    const outside = e.clientX < box.left || e.clientX > box.right || e.clientY < box.top || e.clientY > box.bottom;
    if (e.target === dialog && outside) dialog.close(); // the backdrop
  });
  dialog.addEventListener("close", () => {
    if (returnTo?.isConnected && returnTo !== document.body) returnTo.focus({ preventScroll: true });
    returnTo = null;
  });
}
