// Chat page: send a message, render the reply as it streams, resume after a reconnect.
const root = document.getElementById("chat");
const chatId = root.dataset.chatId;
const transcript = document.getElementById("transcript");
const composer = document.getElementById("composer");
const input = document.getElementById("composer-input");
const sendButton = document.getElementById("send");
const statusLine = document.getElementById("composer-status");
const csrf = document.querySelector("input[name=csrfmiddlewaretoken]")?.value;

const state = { activeStreamId: root.dataset.activeStream || null, lastSeq: Number(root.dataset.lastSeq || 0), socket: null, retry: 0 };

function setBusy(busy) {
  sendButton.disabled = busy;
  statusLine.textContent = busy ? "Streaming…" : "";
}

function bubble(role, text, id) {
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

function onEvent(event) {
  if (event.conversationId !== chatId || event.streamId !== state.activeStreamId) return; // stale stream
  if (event.seq <= state.lastSeq) return;
  if (event.seq !== state.lastSeq + 1) { resume(); return; }
  state.lastSeq = event.seq;
  if (event.type === "stream.started") assistantBubble(event.messageId);
  else if (event.type === "stream.delta") {
    const li = transcript.querySelector(".msg--assistant:last-child") ;
    li.querySelector(".msg-content").textContent += event.text;
  } else if (["stream.completed", "stream.cancelled", "stream.interrupted", "stream.failed"].includes(event.type)) {
    state.activeStreamId = null;
    setBusy(false);
  }
}

function resume() {
  if (state.socket?.readyState === WebSocket.OPEN && state.activeStreamId)
    state.socket.send(JSON.stringify({ type: "stream.resume", conversationId: chatId, streamId: state.activeStreamId, afterSeq: state.lastSeq }));
}

function connect() {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/`);
  state.socket = socket;
  socket.addEventListener("open", () => {
    state.retry = 0;
    socket.send(JSON.stringify({ type: "subscribe", conversationId: chatId }));
    resume();
  });
  socket.addEventListener("message", (msg) => {
    const event = JSON.parse(msg.data);
    if (event.type === "error") { statusLine.textContent = event.message; return; }
    if (event.type?.startsWith("stream.")) onEvent(event);
  });
  socket.addEventListener("close", () => {
    state.retry = Math.min(state.retry + 1, 6);
    setTimeout(connect, 250 * 2 ** state.retry);
  });
}

composer.addEventListener("submit", async (e) => {
  e.preventDefault();
  const content = input.value.trim();
  if (!content) return;
  setBusy(true);
  const response = await fetch(`/api/mothership/chats/${chatId}/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
    body: JSON.stringify({ content }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) { setBusy(false); statusLine.textContent = body.detail || `Error ${response.status}`; return; }
  input.value = "";
  bubble("user", content, body.user_message_id);
  assistantBubble(body.message_id);
  state.activeStreamId = body.stream_id;
  state.lastSeq = 0;
  resume();
});

setBusy(Boolean(state.activeStreamId));
connect();
