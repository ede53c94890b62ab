// Shared by the pages: one reconnecting /ws/ socket, a countdown that never shows the past,
// and relative times.

// A socket that hears nothing for `pingEveryMs` sends a ping; without any answer within
// `pongWithinMs` (a hung server process: the kernel keeps the connection open) it is abandoned
// and a new one opened. A new one that does not open within `openWithinMs` (it landed on the
// hung process's backlog) is abandoned too. An abandoned socket's late messages are ignored.
const TIMING = { pingEveryMs: 5000, pongWithinMs: 3000, openWithinMs: 4000 };

// Signed out (in another tab, or the session ended): the socket is refused, and no retry can
// help. The page stops reconnecting and says so, with a sign-in link back to where it was.
const SIGNED_OUT_CODES = [4401, 4403];

async function signedIn() {
  try {
    const response = await fetch("/api/mothership/workspaces", {
      headers: { Accept: "application/json" },
      signal: AbortSignal.timeout(3000), // a hung server is not a lost session
    });
    return !(response.status === 401 || response.status === 403);
  } catch {
    return true; // the server is away, not the session: keep trying
  }
}

export function showSignedOut() {
  if (document.getElementById("signed-out")) return;
  const notice = document.createElement("div");
  notice.id = "signed-out";
  notice.className = "signed-out";
  notice.setAttribute("role", "alert");
  const link = document.createElement("a");
  link.href = `/accounts/login/?next=${encodeURIComponent(location.pathname + location.search)}`;
  link.textContent = "Sign in again";
  notice.append("You were signed out, so this page no longer updates. ", link, " to go on here.");
  document.body.prepend(notice);
}

export function openSocket({ onOpen, onMessage }) {
  const timing = { ...TIMING, ...(globalThis.__socketTiming || {}) }; // the browser tests shorten them
  const state = { socket: null, retry: 0, signedOut: false };
  function connect() {
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/`);
    state.socket = socket;
    let done = false; // closed or abandoned: it has reconnected once, and says nothing more
    let heard = Date.now();
    let pingedAt = 0;
    let watch = 0;
    let opened = false;
    const again = async (event) => {
      if (done) return;
      done = true;
      clearTimeout(opening);
      clearInterval(watch);
      if (socket.readyState !== WebSocket.CLOSED) socket.close();
      // Closed for lost sign-in, or refused again and again (a refused handshake shows no code,
      // nor does a server that is down): then ask the API whether the session is gone.
      const refused = event?.type === "close" && (SIGNED_OUT_CODES.includes(event.code) || (!opened && state.retry >= 5));
      if (refused && !(await signedIn())) {
        state.signedOut = true;
        showSignedOut();
        return;
      }
      state.retry = Math.min(state.retry + 1, 6);
      setTimeout(connect, 250 * 2 ** state.retry);
    };
    const opening = setTimeout(again, timing.openWithinMs);
    socket.addEventListener("open", () => {
      if (done) return;
      opened = true;
      clearTimeout(opening);
      state.retry = 0;
      heard = Date.now();
      watch = setInterval(() => {
        const now = Date.now();
        if (pingedAt && now - pingedAt > timing.pongWithinMs) again();
        else if (!pingedAt && now - heard >= timing.pingEveryMs) {
          pingedAt = now;
          socket.send(JSON.stringify({ type: "ping" }));
        }
      }, Math.min(1000, timing.pongWithinMs / 2));
      onOpen(socket);
    });
    socket.addEventListener("message", (msg) => {
      if (done) return;
      heard = Date.now(); // any message says the server is alive
      pingedAt = 0;
      const probe = globalThis.__renderProbe; // set by bench/render.py: each message's main-thread time
      const started = probe ? performance.now() : 0;
      let message;
      try { message = JSON.parse(msg.data); } catch { return; }
      if (message.type === "pong") return;
      onMessage(message, socket);
      if (probe) probe.events.push(performance.now() - started);
    });
    socket.addEventListener("close", again);
  }
  connect();
  return state;
}

// "in 3:05" for a future epoch-ms; a past or missing time reads "waiting…" (never "0s" forever).
export function countdown(epochMs, now = Date.now()) {
  const at = Number(epochMs);
  if (!epochMs || !Number.isFinite(at) || at <= now) return "waiting…";
  const seconds = Math.ceil((at - now) / 1000);
  const m = Math.floor(seconds / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return `in ${m}:${s}`;
}

export function relativeTime(iso, now = Date.now()) {
  const then = Date.parse(iso);
  if (!Number.isFinite(then)) return "";
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 36) return `${hours} h ago`;
  return `${Math.round(hours / 24)} d ago`;
}

// Money as the pages show it (the server's templates use the same rule, the "dollars" filter):
// cents, and hundredths of a cent for what is more than nothing but less than one cent.
export function dollars(value) {
  if (value === null || value === undefined) return "–";
  if (value > 0 && value < 0.0001) return "< $0.0001"; // more than nothing: never "$0.0000"
  return value > 0 && value < 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(2)}`;
}
