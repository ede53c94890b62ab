// The conversation keeps its newest text in view while the reader is at its end: a streaming
// reply is followed as it grows. Scrolling up to read stops that; coming back to the end, or
// sending (unless the reader scrolls up before the message is answered), starts it again.
const SLACK = 80; // px from the end that still count as "at the end"
const LET_GO_MS = 400;

export function followEnd(content) {
  const page = document.scrollingElement;
  const atEnd = () => page.scrollTop + window.innerHeight >= page.scrollHeight - SLACK;
  const trace = globalThis.__followTrace; // set by a test: why the page moved
  const note = (what) => trace?.push(`${Math.round(performance.now())} ${what} top=${page.scrollTop} h=${page.scrollHeight}`);
  const toEnd = () => {
    note("toEnd");
    page.scrollTo({ top: page.scrollHeight });
  };
  let pinned = true;
  let letGoAt = -Infinity; // when the reader last moved up
  let lastTop = page.scrollTop;
  window.addEventListener("scroll", () => {
    const top = page.scrollTop;
    // Moving up and off the end lets go; reaching the end going down (or by toEnd) holds on. A
    // move up still at the end (a smooth scroll's first steps, a page that shrank) changes nothing.
    // The scroll events of a follow just before a move up arrive after it: no hold for a moment.
    if (top < lastTop && !atEnd()) pinned = false;
    else if (top >= lastTop && atEnd() && performance.now() - letGoAt > LET_GO_MS) pinned = true;
    note(`scroll pinned=${pinned} last=${lastTop}`);
    lastTop = top;
  }, { passive: true });
  // A move up lets go at once, before its (possibly smooth) scrolling has left the end.
  const letGo = () => {
    note("let go");
    pinned = false;
    letGoAt = performance.now();
  };
  window.addEventListener("wheel", (e) => {
    note(`wheel ${e.deltaY}`);
    if (e.deltaY < 0) letGo();
  }, { passive: true });
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
    // Follow the end again (a send), unless the reader moved up since ``unlessLetGoSince``
    // (a performance.now() time): scrolling up while a message is on its way keeps its place.
    // Stop following the end (the page shows an earlier message the reader came for).
    release: letGo,
    toEnd({ unlessLetGoSince = Infinity } = {}) {
      if (letGoAt >= unlessLetGoSince) return;
      pinned = true;
      toEnd();
    },
  };
}
