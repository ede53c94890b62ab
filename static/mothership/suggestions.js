// An empty chat's suggestions: a click puts one in the message box and sends it (the composer's
// own submit); they go once the transcript holds a message, however it came (this tab's send,
// another tab's, earlier messages), and follow the model picker to the list for that model.
export function suggestions({ transcript, composer, input }) {
  const section = document.getElementById("suggestions");
  if (!section) return;
  section.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-prompt]");
    if (!button) return;
    input.value = button.dataset.prompt;
    input.focus(); // where the keyboard goes on, once the suggestions are gone
    composer.requestSubmit();
  });
  const gone = () => {
    if (!transcript.querySelector(".msg")) return false;
    section.remove();
    return true;
  };
  if (gone()) return;
  const watch = new MutationObserver(() => { if (gone()) watch.disconnect(); });
  watch.observe(transcript, { childList: true });
  document.getElementById("chat-model")?.addEventListener("change", (e) => {
    for (const list of section.querySelectorAll(".suggestions-list"))
      list.hidden = !list.dataset.models.split(" ").includes(e.target.value);
  });
}
