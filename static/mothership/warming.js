// The chat page's warming panel: the cache-warming surface over the page's socket.
// Off by default; the countdown runs off the server's nextWarmAt and never shows a past time.
import { countdown, dollars } from "./live.js";

export const SURFACE_ID = "cache-warming";

const STOP_REASONS = {
  closed: "Stopped: the conversation was closed.",
  not_worth_it: "Stopped: keeping the cache warm now costs more than rebuilding it once.",
  idle_limit: "Stopped: idle for too long.",
  failures: "Stopped: the model failed several warms in a row.",
  cache_miss: "Stopped: the model is not caching this conversation, so warming only costs money.",
  budget: "Stopped: the workspace has spent its monthly budget.",
};

function pct(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(1)} %`;
}

export function warmingPanel(root, chatId) {
  const enabled = root.querySelector("#warming-enabled");
  const interval = root.querySelector("#warming-interval");
  const count = root.querySelector("#warming-countdown");
  const status = root.querySelector("#warming-status");
  const warmNow = root.querySelector("#warming-now");
  let fields = null;
  let socket = null;
  // The switch's value the user just asked for: an update sent before the server saw it (an
  // interval change, a warm) must not flip the switch back. Cleared by the update that carries
  // it, by an error, or after 5 s.
  let pendingEnabled = null;
  let pendingTimer = null;

  function settle() { pendingEnabled = null; clearTimeout(pendingTimer); }

  function send(action, payload) {
    if (socket?.readyState !== WebSocket.OPEN) { status.textContent = "Not connected; try again in a moment."; return false; }
    const frame = { type: "invoke", surfaceId: SURFACE_ID, conversationId: chatId, action };
    if (payload !== undefined) frame.payload = payload;
    socket.send(JSON.stringify(frame));
    return true;
  }

  function render() {
    if (!fields) return;
    root.dataset.enabled = fields.enabled ? "true" : "false";
    enabled.checked = pendingEnabled ?? fields.enabled;
    enabled.setAttribute("aria-checked", String(enabled.checked));
    if (document.activeElement !== interval) interval.value = fields.interval_seconds;
    root.querySelector("[data-field=lastCachePct]").textContent = pct(fields.lastCachePct);
    root.querySelector("[data-field=cacheRetention]").textContent = pct(fields.cacheRetention);
    root.querySelector("[data-field=warmCount]").textContent = String(fields.warmCount);
    root.querySelector("[data-field=lastWarmCost]").textContent = dollars(fields.lastWarmCost);
    root.querySelector("[data-field=costPerHour]").textContent = dollars(fields.costPerHour);
    const reason = fields.stopReason ? STOP_REASONS[fields.stopReason] || `Stopped: ${fields.stopReason}.` : "";
    status.textContent = [reason, fields.lastError ? `Last error: ${fields.lastError}` : ""].filter(Boolean).join(" ");
    tick();
  }

  function tick() {
    if (!fields) return;
    const next = fields.timer?.nextWarmAt;
    count.textContent = fields.enabled ? `Next warm ${countdown(next)}` : "Off";
    count.dataset.nextWarmAt = next ?? "";
  }

  enabled.addEventListener("change", () => {
    settle();
    pendingEnabled = enabled.checked;
    pendingTimer = setTimeout(() => { settle(); render(); }, 5000);
    if (!send("set-enabled", enabled.checked)) { // explicit, never a flip
      settle();
      if (fields) render(); else enabled.checked = !enabled.checked;
    }
  });
  interval.addEventListener("change", () => {
    const value = Number(interval.value);
    if (!Number.isInteger(value) || value < Number(interval.min) || value > Number(interval.max)) {
      status.textContent = `The interval must be a whole number of seconds between ${interval.min} and ${interval.max}.`;
      return;
    }
    send("set-interval", value);
  });
  warmNow.addEventListener("click", () => send("warm-now"));
  setInterval(tick, 1000);

  return {
    subscribe(ws) {
      socket = ws;
      ws.send(JSON.stringify({ type: "subscribe", surfaceId: SURFACE_ID, conversationId: chatId }));
    },
    onMessage(message) {
      if (message.conversationId !== chatId) return; // another conversation's (stale scope)
      if (message.type === "surface" || message.type === "update") {
        fields = message.fields;
        if (pendingEnabled !== null && fields.enabled === pendingEnabled) settle();
        render();
      } else if (message.type === "error") {
        settle();
        render();
        status.textContent = message.message;
      }
    },
  };
}
