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
  new ResizeObserver(() => pinned && toEnd()).observe(content);
  toEnd(); // a conversation opens at its newest message
  return {
    toEnd() {
      pinned = true;
      toEnd();
    },
  };
}
