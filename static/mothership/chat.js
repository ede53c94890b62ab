// Chat page: send a message, render the reply as it streams, resume after a reconnect,
// stop exactly the turn the user meant, close the conversation, and the warming panel.
import { openSocket, showSignedOut } from "./live.js";
import { SURFACE_ID, warmingPanel } from "./warming.js";
import { replies } from "./replies.js";
import { conversationList } from "./chatnav.js";
import { followEnd } from "./scroll.js";
import { chatSettings } from "./chatsettings.js";
import { showToolCall, showToolCalls } from "./toolcards.js";
import { rememberTrashed, trashChat } from "./trash.js";
import { branches } from "./branches.js";
import { organize } from "./organize.js";
import { sharePanel } from "./share.js";
import { menus } from "./menu.js";
import { suggestions } from "./suggestions.js";
import { attachmentTray } from "./attachments.js";
import { showFiles } from "./files.js";

const root = document.getElementById("chat");
const chatId = root.dataset.chatId;
const transcript = document.getElementById("transcript");
const composer = document.getElementById("composer");
const input = document.getElementById("composer-input");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const closeButton = document.getElementById("close-chat");
const deleteButton = document.getElementById("delete-chat");
const statusLine = document.getElementById("composer-status");
const csrf = document.querySelector("input[name=csrfmiddlewaretoken]")?.value;
const TERMINAL = ["stream.completed", "stream.cancelled", "stream.interrupted", "stream.failed"];
const warming = warmingPanel(document.getElementById("warming"), chatId);
const conversations = conversationList({ currentChatId: chatId });
sharePanel({ chatId, csrf });
menus();
suggestions({ transcript, composer, input }); // an empty chat's: a click sends one through the composer

const state = {
  activeStreamId: root.dataset.activeStream || null,
  activeMessageId: root.dataset.activeMessage || null,
  lastSeq: Number(root.dataset.lastSeq || 0),
  socket: null,
  settleTimer: null,
  sending: false,
  finished: new Set(), // streams this page saw end: never followed again
  interrupted: new Map(), // stream → its reply: a turn this page stopped to send, settled by its terminal event
  prefix: "", // Continue: the kept text the followed stream's deltas go on from
  startedBy: root.dataset.activeStartedBy || null, // who sent the followed turn (a user id)
};
// Send waits for the files under way; a message of files alone needs no text.
const tray = attachmentTray({ chatId, csrf, notice: (text) => notice(text), onChange: armSend });
function armSend() {
  sendButton.disabled = state.sending || tray.uploading();
  sendButton.title = tray.uploading() ? "Waiting for the files to upload" : "";
  input.required = tray.count() === 0;
}
const reply = replies({ transcript, chatId, canContinue: root.dataset.canContinue === "true", onAgain: answerAgain });
const rendererFor = (messageId) => reply.rendererFor(messageId, assistantBubble);
const organizer = organize({ chatId, csrf, notice: (text) => notice(text) });
const versions = branches({
  transcript,
  chatId,
  csrf,
  notice: (text) => notice(text),
  // An edit was sent: its new version, then its reply, followed like a send.
  onEdited(text, body, siblings) {
    bubble("user", text, body.user_message_id).dataset.siblings = siblings;
    view.toEnd({});
    follow(body, false);
  },
});

const QUEUED = "Queued — waiting for a worker…";
const STOP_REFUSED = "Only the member who sent this message, the chat's creator or an owner may stop its reply";

// Stop (and "Stop and send") for the turn's sender, the chat's creator and the workspace's owners:
// the server refuses anyone else (403), as it refuses Close.
function mayStop() {
  return root.dataset.stopsAny === "true" || (state.startedBy !== null && String(state.startedBy) === root.dataset.userId);
}

function setBusy(busy) {
  // While a reply streams the composer stays usable: Send becomes "Stop and send".
  const stoppable = mayStop();
  armSend();
  sendButton.textContent = busy && state.activeStreamId && stoppable ? "Stop and send" : "Send";
  stopButton.hidden = !busy;
  // Stop is armed only once the stream id is known (a send in flight has none yet).
  stopButton.disabled = !busy || !state.activeStreamId || !stoppable;
  stopButton.title = busy && state.activeStreamId && !stoppable ? STOP_REFUSED : "";
  root.dataset.busy = busy ? "true" : "false";
  reply.refreshActions(busy);
  versions.refresh(busy);
  if (busy) statusLine.textContent = "Streaming…";
  else if (statusLine.textContent === "Streaming…" || statusLine.textContent === QUEUED) statusLine.textContent = "";
}

function notice(text) {
  statusLine.textContent = text;
}

function bubble(role, text, id) {
  const existing = id && transcript.querySelector(`[data-message-id="${id}"]`);
  if (existing) return existing;
  const li = document.createElement("li");
  li.className = `msg msg--${role}`;
  if (id) li.dataset.messageId = id;
  li.innerHTML = `<span class="msg-role"></span><div class="msg-content"></div>`;
  li.querySelector(".msg-role").textContent = role;
  li.querySelector(".msg-content").textContent = text;
  transcript.append(li);
  return li;
}

function assistantBubble(messageId) {
  return transcript.querySelector(`[data-message-id="${messageId}"]`) || bubble("assistant", "", messageId);
}

// Why a turn stopped, where its status alone does not say it.
const STOP_LABELS = { budget: "stopped: the budget is spent" };

function markStatus(messageId, status, reason) {
  const li = messageId && transcript.querySelector(`[data-message-id="${messageId}"]`);
  if (!li || status === "complete") return;
  li.classList.add(`msg--${status}`);
  let tag = li.querySelector(".msg-status");
  if (!tag) {
    tag = document.createElement("span");
    li.querySelector(".msg-content").after(tag);
  }
  tag.className = "msg-status";
  tag.textContent = STOP_LABELS[reason] || status;
}

// A turn started elsewhere (another tab, an API client): follow it from its first event.
function adopt(event) {
  state.activeStreamId = event.streamId;
  state.activeMessageId = event.messageId || null;
  state.startedBy = event.startedBy ?? null;
  state.lastSeq = 0;
  if (event.userMessageId) bubble("user", event.userMessage || "", event.userMessageId); // its files: with its start event, below
  if (event.messageId) assistantBubble(event.messageId);
  setBusy(true);
}

// A reply that ends in front of the reader is not "new" on their tiles; one that ended while the
// tab was hidden is, until they come back to it.
function markSeen() {
  if (document.visibilityState !== "visible") return;
  fetch(`/api/mothership/chats/${chatId}/seen`, { method: "POST", headers: { "X-CSRFToken": csrf } }).catch(() => {});
}
document.addEventListener("visibilitychange", markSeen);

function settle(status, text, reason) {
  markSeen();
  if (state.activeStreamId) state.finished.add(state.activeStreamId);
  if (state.activeMessageId) reply.finish(state.activeMessageId, text);
  markStatus(state.activeMessageId, status, reason);
  state.activeStreamId = null;
  state.activeMessageId = null;
  state.startedBy = null;
  clearTimeout(state.settleTimer);
  setBusy(false);
}

function onReplayGap(event) {
  // The log no longer holds what we missed: take the server's snapshot instead.
  const live = event.snapshot?.stream;
  const renderer = rendererFor(state.activeMessageId);
  if (live && live.id === state.activeStreamId) {
    renderer.reset(live.text === null || live.text === undefined ? renderer.text : state.prefix + live.text);
    state.lastSeq = live.last_seq;
    return;
  }
  const message = (event.snapshot?.messages || []).find((m) => m.id === state.activeMessageId);
  settle(message?.status || "complete", message ? message.content : undefined, message?.stop_reason);
}

function onEvent(event) {
  if (event.conversationId !== chatId) return;
  if (!state.activeStreamId && !state.sending && !state.finished.has(event.streamId) && !TERMINAL.includes(event.type)) {
    if (event.type === "stream.started" && event.seq === 1) adopt(event);
    else { adopt(event); state.lastSeq = 0; resume(); return; } // joined mid-way: replay it from the log
  }
  // The turn a Stop and send stopped: its end may come after the new turn's answer (a socket
  // answers before the events that arrived meanwhile); its reply still shows how it ended.
  if (TERMINAL.includes(event.type) && state.interrupted.has(event.streamId) && event.streamId !== state.activeStreamId) {
    const messageId = state.interrupted.get(event.streamId);
    state.interrupted.delete(event.streamId);
    state.finished.add(event.streamId);
    reply.finish(messageId);
    markStatus(messageId, event.type === "stream.completed" ? "complete" : event.type.slice("stream.".length), event.reason);
    return;
  }
  // Events of any stream that is no longer the active one are dropped: no stale tokens in the next turn.
  if (!state.activeStreamId || event.streamId !== state.activeStreamId) return;
  if (event.type === "stream.replay_gap") { onReplayGap(event); return; }
  if (event.seq <= state.lastSeq) return; // duplicate (live + replay)
  if (event.seq !== state.lastSeq + 1) { resume(); return; } // a gap: ask the log
  state.lastSeq = event.seq;
  if (event.type === "stream.started") {
    if (statusLine.textContent === QUEUED) statusLine.textContent = "Streaming…";
    if (event.startedBy !== undefined) { state.startedBy = event.startedBy; setBusy(true); }
    state.activeMessageId = event.messageId;
    // The question's files, in every tab (the sender's has them already; an edit keeps them).
    showFiles(event.userMessageId && transcript.querySelector(`[data-message-id="${event.userMessageId}"]`), event.userAttachments);
    assistantBubble(event.messageId);
    attempt(event.messageId, Boolean(event.continued));
  } else if (event.type === "stream.delta") {
    rendererFor(state.activeMessageId).append(event.text);
  } else if (event.type === "stream.tool_call") {
    showToolCall(assistantBubble(state.activeMessageId), { ...event, status: "running" });
    statusLine.textContent = `Running the tool ${event.tool}…`;
  } else if (event.type === "stream.tool_approval") {
    showToolCall(assistantBubble(state.activeMessageId), { ...event, status: "waiting" });
    askApproval(event);
  } else if (event.type === "stream.tool_result") {
    approvalBox.hidden = true;
    showToolCall(assistantBubble(state.activeMessageId), event);
    statusLine.textContent = `The tool answered: ${event.status} (${event.durationMs} ms).`;
  } else if (TERMINAL.includes(event.type)) {
    approvalBox.hidden = true;
    settle(event.type === "stream.completed" ? "complete" : event.type.slice("stream.".length), undefined, event.reason);
  }
}

// A tool call waits for a person: any member may approve or deny it, once, from any tab.
const approvalBox = document.getElementById("tool-approval");
function askApproval(event) {
  document.getElementById("tool-approval-text").textContent =
    `The tool ${event.tool} waits for your approval: ${JSON.stringify(event.arguments)}`;
  approvalBox.dataset.callId = event.callId;
  approvalBox.hidden = false;
  statusLine.textContent = `The tool ${event.tool} waits for a person's approval.`;
}
function answerApproval(approve) {
  const callId = approvalBox.dataset.callId;
  approvalBox.hidden = true;
  fetch(`/api/mothership/chats/${chatId}/tool-calls/${encodeURIComponent(callId)}/approval`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: JSON.stringify({ approve }),
  }).then(async (answer) => {
    if (!answer.ok) notice((await answer.json().catch(() => ({}))).detail || "The answer was not taken.");
  }).catch(() => notice("The answer could not be sent; try again."));
}
document.getElementById("tool-approve").addEventListener("click", () => answerApproval(true));
document.getElementById("tool-deny").addEventListener("click", () => answerApproval(false));

function resume() {
  if (state.socket?.readyState === WebSocket.OPEN && state.activeStreamId)
    state.socket.send(JSON.stringify({ type: "stream.resume", conversationId: chatId, streamId: state.activeStreamId, afterSeq: state.lastSeq }));
}

function connect() {
  openSocket({
    onOpen: (socket) => {
      state.socket = socket;
      socket.send(JSON.stringify({ type: "subscribe", conversationId: chatId }));
      warming.subscribe(socket);
      conversations.subscribe(socket);
      resume();
    },
    onMessage: (event) => {
      if (event.surfaceId === SURFACE_ID) { warming.onMessage(event); return; }
      if (conversations.onMessage(event)) return;
      if (answeredSend(event)) return;
      if (event.type === "error") { notice(event.message); return; }
      if (event.type?.startsWith("stream.")) onEvent(event);
    },
  });
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: JSON.stringify(body),
  });
  return { response, body: await response.json().catch(() => ({})) };
}

// A send goes over the socket the page already holds (no request to authenticate, parse and
// answer: the cheapest way to start a turn), answered `message.sent` or an error frame with its
// requestId; shaped here as the HTTP answer is, so the composer reads either. A message past a
// frame (64 KiB; the API takes 100,000 characters), or no open socket, is posted instead.
const SOCKET_FRAME_BYTES = 60 * 1024;
const SOCKET_STATUS = { conflict: 409, forbidden: 403, not_found: 404, rate_limited: 429, too_many_turns: 429, budget_exceeded: 402, unavailable: 503 };
const pendingSends = new Map(); // requestId → the send's answer, waiting
let sendCount = 0;

function sendOnSocket(payload) {
  const socket = state.socket;
  if (socket?.readyState !== WebSocket.OPEN) return null;
  const requestId = `send-${Date.now().toString(36)}-${++sendCount}`;
  const frame = JSON.stringify({ type: "message.send", conversationId: chatId, requestId, ...payload });
  if (new TextEncoder().encode(frame).length > SOCKET_FRAME_BYTES) return null;
  return new Promise((resolve, reject) => {
    const lost = () => { pendingSends.delete(requestId); reject(new Error("the socket closed before the answer")); };
    socket.addEventListener("close", lost, { once: true });
    pendingSends.set(requestId, (message) => {
      pendingSends.delete(requestId);
      socket.removeEventListener("close", lost);
      if (message.type === "message.sent") {
        resolve({ response: { ok: true, status: 201 }, body: { stream_id: message.streamId, message_id: message.messageId, user_message_id: message.userMessageId } });
      } else {
        resolve({ response: { ok: false, status: SOCKET_STATUS[message.code] || 400 }, body: { detail: message.message, code: message.code, active_stream_id: message.activeStreamId ?? null } });
      }
    });
    socket.send(frame);
  });
}

// The answer to a send on the socket (true: it was one).
function answeredSend(message) {
  const answer = message.requestId && pendingSends.get(message.requestId);
  if (!answer || (message.type !== "message.sent" && message.type !== "error")) return false;
  answer(message);
  return true;
}

const NOT_CANCELLED = {
  already_finished: "That reply had already finished.",
  stream_mismatch: "Stream is no longer active: a newer reply is running and was left alone.",
  not_active: "Stream is no longer active.",
};

async function stop() {
  // Snapshot the turn the user meant when pressing Stop; everything below is guarded by it.
  const snapshot = { chat: chatId, stream: state.activeStreamId };
  if (!snapshot.stream) return;
  stopButton.disabled = true;
  notice("Stopping…");
  let result;
  try {
    result = await post(`/api/mothership/chats/${snapshot.chat}/cancel`, { stream_id: snapshot.stream });
  } catch (err) {
    console.warn("stop failed", err);
    if (state.activeStreamId === snapshot.stream) { stopButton.disabled = false; notice("Could not reach the server; the reply may still be running."); }
    return;
  }
  const { response, body } = result;
  if (!response.ok) {
    if (state.activeStreamId === snapshot.stream) stopButton.disabled = false;
    notice(body.detail || `Stop failed (${response.status}).`);
    return;
  }
  if (state.activeStreamId && state.activeStreamId !== snapshot.stream) return; // a newer turn is on screen: leave it alone
  if (body.cancelled === false) notice(NOT_CANCELLED[body.reason] || "Stream is no longer active.");
  else notice(body.settled === false ? "Stopped (the worker did not answer; the text so far was kept)." : "Stopped.");
  if (state.activeStreamId !== snapshot.stream) return; // already settled by its terminal event
  if (body.cancelled === false && body.reason === "not_active") { settle("complete"); return; }
  // The stream is over either way, and its own terminal event (and any last deltas) settle the
  // transcript: the socket stays open, and the log is asked in case they were missed. If nothing
  // comes (the log expired), stop waiting after a few seconds.
  resume();
  clearTimeout(state.settleTimer);
  state.settleTimer = setTimeout(() => { if (state.activeStreamId === snapshot.stream) settle("cancelled"); }, 5000);
}

async function closeConversation() {
  closeButton.disabled = true;
  try {
    const { response, body } = await post(`/api/mothership/chats/${chatId}/close`, {});
    if (!response.ok) { notice(body.detail || `Close failed (${response.status}).`); return; }
    const parts = ["Conversation closed."];
    if (body.cancelled) parts.push("The running reply was stopped.");
    if (body.warming_disabled) parts.push("Cache warming is off.");
    parts.push("A new message reopens it.");
    organizer.offerArchive(parts.join(" "));
    root.dataset.closed = "true";
    if (body.cancelled && state.activeStreamId === body.stream_id) resume();
  } catch (err) {
    notice("Could not reach the server to close the conversation.");
  } finally {
    closeButton.disabled = false;
  }
}

composer.addEventListener("submit", async (e) => {
  e.preventDefault();
  const content = input.value.trim();
  const files = tray.files();
  if ((!content && !files.length) || state.sending || tray.uploading()) return;
  // Stop and send: the server stops exactly the turn this page shows, then starts this one (a
  // member who may not stop that turn just sends, and is told to wait).
  const interrupt = mayStop() ? state.activeStreamId : null;
  const interruptedReply = interrupt ? state.activeMessageId : null;
  const sentAt = performance.now();
  state.sending = true; // until the answer names the stream, its events are left to the replay below
  setBusy(true);
  let result;
  try {
    const ids = files.map((file) => file.id);
    const payload = { content, ...(ids.length ? { attachments: ids } : {}), ...(interrupt ? { interrupt } : {}) };
    result = await (sendOnSocket(payload) ?? post(`/api/mothership/chats/${chatId}/messages`, payload));
  } catch (err) {
    state.sending = false;
    setBusy(Boolean(state.activeStreamId));
    // Lost mid-send, it may have started: its events, once the socket is back, show it here.
    notice("The connection dropped while sending. If your message went through, it appears here in a moment; if not, it is still in the box.");
    return;
  } finally {
    state.sending = false;
  }
  const { response, body } = result;
  if (!response.ok) {
    setBusy(Boolean(state.activeStreamId));
    if (response.status === 409 && interrupt) notice("Another reply started meanwhile; nothing was stopped. Your message was not sent.");
    else if (response.status === 409) notice(mayStop() ? "A reply is already streaming in this conversation; stop it or wait for it to finish." : "Another member's reply is streaming; wait for it to finish.");
    else if (response.status === 403 && /credentials/i.test(body.detail || "")) {
      showSignedOut(); // signed out elsewhere: the link signs in and comes back here
      notice("You were signed out; your message was not sent (it is still in the box).");
    } else notice(body.detail || `Error ${response.status}`);
    return;
  }
  if (interrupt && state.activeStreamId === interrupt) state.interrupted.set(interrupt, interruptedReply); // not settled yet
  input.value = "";
  tray.sent(files.map((file) => file.id));
  nameFromFirstMessage(content || files[0]?.name || ""); // as the server names it: the text, else the first file
  showFiles(bubble("user", content, body.user_message_id), files);
  view.toEnd({ unlessLetGoSince: sentAt }); // what was just sent, and its reply, in view (unless the reader went up meanwhile)
  follow(body, false);
});

// A turn this page started (a send, Retry, Regenerate, Continue): followed from its first event.
function follow(body, continued) {
  root.dataset.closed = "false";
  assistantBubble(body.message_id);
  state.activeStreamId = body.stream_id;
  state.activeMessageId = body.message_id;
  state.startedBy = root.dataset.userId; // this page's own turn
  state.lastSeq = 0;
  attempt(body.message_id, continued);
  setBusy(true); // arms Stop now that the stream id is known
  resume(); // events that arrived before we knew the stream id were dropped: replay them
  // Every worker busy: say so rather than a silent "Streaming…" until a worker takes the turn.
  const queuedStream = body.stream_id;
  setTimeout(() => {
    if (state.activeStreamId === queuedStream && state.lastSeq === 0) statusLine.textContent = QUEUED;
  }, 500);
}

// The reply's new attempt: its deltas go on from its kept text (Continue) or from nothing.
function attempt(messageId, continued) {
  if (state.attempted === state.activeStreamId) return; // once per stream (the answer and its first event)
  state.attempted = state.activeStreamId;
  state.prefix = continued ? reply.source(messageId) : "";
  reply.begin(messageId, { continued });
}

// Retry, Regenerate, Continue: the server starts the turn; this page follows it like a send.
async function answerAgain(messageId, action) {
  if (state.activeStreamId || state.sending) return;
  state.sending = true;
  setBusy(true);
  let result;
  try {
    result = await post(`/api/mothership/chats/${chatId}/messages/${messageId}/${action}`, {});
  } catch (err) {
    notice("Could not reach the server; nothing was started.");
    result = null;
  } finally {
    state.sending = false;
  }
  if (!result?.response.ok) {
    setBusy(Boolean(state.activeStreamId));
    if (result) notice(result.body.detail || `Error ${result.response.status}`);
    return;
  }
  if (result.body.message_id !== messageId) versions.versionAdded(messageId, result.body.message_id); // a new version
  follow(result.body, action === "continue");
}

stopButton.addEventListener("click", stop);
closeButton?.addEventListener("click", closeConversation); // shown only to its creator and the owners

// To the trash (the server stops a running reply first); the dashboard offers Undo.
async function deleteConversation() {
  deleteButton.disabled = true;
  try {
    const answer = await trashChat(chatId, csrf);
    if (!answer.ok) { notice(answer.detail); deleteButton.disabled = false; return; }
    rememberTrashed({ chatId, title: document.getElementById("chat-title").textContent.trim() });
    window.location.assign(`/?workspace=${root.dataset.workspaceId}`);
  } catch (err) {
    notice("Could not reach the server to delete the conversation.");
    deleteButton.disabled = false;
  }
}
deleteButton?.addEventListener("click", deleteConversation); // shown only to its creator and the owners

// Earlier messages, a page at a time, from the detail's cursor (the page shows the latest ones).
const earlierButton = document.getElementById("earlier-messages");
async function showEarlier() {
  earlierButton.disabled = true;
  try {
    const response = await fetch(`/api/mothership/chats/${chatId}/messages?cursor=${encodeURIComponent(earlierButton.dataset.cursor)}`, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) { notice(body.detail || `Could not load earlier messages (${response.status}).`); return; }
    const first = transcript.firstElementChild;
    for (const message of body) {
      if (transcript.querySelector(`[data-message-id="${message.id}"]`)) continue;
      const li = bubble(message.role, message.content, message.id);
      showFiles(li, message.attachments);
      if (message.status !== "complete") li.classList.add(`msg--${message.status}`);
      if (message.role === "assistant") { reply.stored(li, message.content); reply.showFigures(message.id, message); }
      transcript.insertBefore(li, first);
    }
    const next = /[?&]cursor=([^&>]+)[^>]*>;\s*rel="next"/.exec(response.headers.get("Link") || "");
    if (next) earlierButton.dataset.cursor = decodeURIComponent(next[1]);
    else earlierButton.remove();
  } finally {
    earlierButton.disabled = false;
  }
}
earlierButton?.addEventListener("click", showEarlier);
// Stored replies render as Markdown; the one still streaming goes on from its text so far.
for (const li of transcript.querySelectorAll(".msg--assistant")) {
  if (li.dataset.messageId === state.activeMessageId) {
    state.prefix = root.dataset.activePrefix || "";
    rendererFor(li.dataset.messageId);
    // Its calls so far, from the log; one that waits for a person asks again here.
    const calls = JSON.parse(document.getElementById("active-tool-calls")?.textContent || "[]");
    showToolCalls(li, calls);
    const waiting = calls.find((call) => call.status === "waiting");
    if (waiting) askApproval(waiting);
  } else reply.stored(li, li.querySelector(".msg-content").textContent);
}
setBusy(Boolean(state.activeStreamId));
const view = followEnd(transcript);
showFound(new URLSearchParams(window.location.search).get("message"));
connect();

// Opened from a search result (?message=<id>): that message in view, and shown briefly.
function showFound(messageId) {
  const found = messageId && transcript.querySelector(`[data-message-id="${CSS.escape(messageId)}"]`);
  if (!found) return;
  view.release();
  found.scrollIntoView({ block: "center" });
  found.tabIndex = -1;
  found.focus({ preventScroll: true });
  found.classList.add("msg--found");
  setTimeout(() => found.classList.remove("msg--found"), 2500);
}


// The chat's model and system prompt, for its next turns.
chatSettings({
  chatId,
  csrf,
  notice,
  onModelChanged: (prefill) => reply.setCanContinue(prefill, Boolean(state.activeStreamId)),
});


// An untitled chat is named by its first message, as the server names it (chats.models.title_from).
const title = document.getElementById("chat-title");
function nameFromFirstMessage(content) {
  if (title.dataset.untitled !== "true") return;
  const line = content.split("\n").map((l) => l.trim()).find(Boolean) || "New chat";
  title.textContent = line.length > 80 ? `${line.slice(0, 79).trimEnd()}…` : line;
  title.dataset.untitled = "false";
  document.title = `${title.textContent} · Mothership`;
}

// Rename inline: the title becomes a text box; Enter saves, Esc cancels.
const renameButton = document.getElementById("rename-chat");
renameButton?.addEventListener("click", () => {
  const box = document.createElement("input");
  box.id = "chat-title-input";
  box.value = title.textContent;
  box.maxLength = 200;
  box.setAttribute("aria-label", "Title of this conversation");
  title.replaceWith(box);
  box.focus();
  box.select();
  let finished = false;
  const done = async (save) => {
    if (finished) return;
    finished = true;
    const wanted = box.value.trim();
    if (save && wanted && wanted !== title.textContent) {
      const response = await fetch(`/api/mothership/chats/${chatId}`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
        body: JSON.stringify({ title: wanted }),
      }).catch(() => null);
      const body = response ? await response.json().catch(() => ({})) : {};
      if (response?.ok) {
        title.textContent = body.title;
        title.dataset.untitled = "false";
        document.title = `${body.title} · Mothership`;
      } else notice(body.detail || "Could not rename the conversation; try again.");
    }
    box.replaceWith(title);
  };
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); done(true); }
    else if (e.key === "Escape") done(false);
  });
  box.addEventListener("blur", () => done(true));
});


// Keyboard: Enter sends (Shift+Enter is a new line), Esc stops the running reply.
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    composer.requestSubmit();
  }
});
// Esc in another field (the search box, the title, the system prompt) is that field's: it clears
// or cancels there, and never stops the reply.
document.addEventListener("keydown", (e) => {
  const otherField = e.target !== input && e.target.closest?.("input, textarea, select, [contenteditable=true]");
  if (e.key === "Escape" && !otherField && state.activeStreamId && !stopButton.hidden && !stopButton.disabled) stop();
});


// The warming section, folded, still says what it is doing: its countdown in the summary.
const warmingSection = document.getElementById("warming-section");
const warmingSummary = document.getElementById("warming-summary");
const warmingCountdown = document.getElementById("warming-countdown");
function summarizeWarming() {
  if (warmingSection && !warmingSection.open) warmingSummary.textContent = warmingCountdown.textContent;
  else if (warmingSummary) warmingSummary.textContent = "";
}
summarizeWarming();
setInterval(summarizeWarming, 1000);

