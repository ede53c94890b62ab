// The conversation keeps its newest text in view while the reader is at its end: a streaming
// reply is followed as it grows. Scrolling up to read stops that; coming back to the end, or
// sending, starts it again.
const SLACK = 80; // px from the end that still count as "at the end"

export function followEnd(content) {
  const page = document.scrollingElement;
  const atEnd = () => page.scrollTop + window.innerHeight >= page.scrollHeight - SLACK;
  const toEnd = () => page.scrollTo({ top: page.scrollHeight });
  let pinned = true;
  window.addEventListener("scroll", () => (pinned = atEnd()), { passive: true });
  // A move up lets go at once, before its (possibly smooth) scrolling has left the end.
  const letGo = () => (pinned = false);
  window.addEventListener("wheel", (e) => e.deltaY < 0 && letGo(), { passive: true });
  let touchY = null;
  window.addEventListener("touchstart", (e) => (touchY = e.touches[0]?.clientY ?? null), { passive: true });
  window.addEventListener("touchmove", (e) => {
    const y = e.touches[0]?.clientY;
    if (touchY !== null && y > touchY) letGo(); // the finger pulls the page down: reading back
    touchY = y ?? touchY;
  }, { passive: true });
  document.addEventListener("keydown", (e) => {
    if (["PageUp", "ArrowUp", "Home"].includes(e.key) && !e.target.closest?.("textarea, input, select")) letGo();
  });
  new ResizeObserver(() => pinned && toEnd()).observe(content);
  toEnd(); // a conversation opens at its newest message
  return {
    toEnd() {
      pinned = true;
      toEnd();
    },
  };
}
