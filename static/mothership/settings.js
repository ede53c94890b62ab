// The settings pages: the Copy button beside a new API token's key (shown once).

function copyButton(button) {
  const field = document.getElementById(button.dataset.copy);
  const status = document.getElementById("token-copy-status");
  button.addEventListener("click", async () => {
    let copied = false;
    try {
      await navigator.clipboard.writeText(field.value);
      copied = true;
    } catch {
      // No clipboard permission (an http:// page, an older browser): select it for Ctrl+C.
      field.focus();
      field.select();
    }
    if (status) status.textContent = copied ? "Copied to the clipboard." : "Selected: press Ctrl+C (⌘C) to copy it.";
  });
}

document.querySelectorAll("button[data-copy]").forEach(copyButton);
