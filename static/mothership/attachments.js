// The composer's files: chosen with the file button, dropped on the page or pasted into the message
// box; uploaded one after another (POST …/attachments, the progress on each chip: the server keeps
// them, and the model reads them, in the order they were added) and named in the next send. A
// chip's remove button takes its file back (DELETE before it is sent); a refused file (400, 413,
// 415, 429) is said in the server's words and its chip goes.
import { fileLabel, sizeWords } from "./files.js";

export function attachmentTray({ chatId, csrf, notice, onChange }) {
  const list = document.getElementById("composer-files");
  const picker = document.getElementById("composer-file-input");
  const button = document.getElementById("attach");
  const dropZone = document.getElementById("drop-zone");
  const announce = document.getElementById("composer-files-status");
  const maxFiles = Number(list.dataset.maxFiles) || Infinity;
  const maxBytes = Number(list.dataset.maxBytes) || Infinity;
  const entries = []; // { file, chip, xhr, body } in the order they were added

  const changed = () => {
    list.hidden = entries.length === 0;
    onChange();
  };

  function chipFor(file) {
    const chip = document.createElement("li");
    chip.className = "attach-chip";
    chip.dataset.state = "waiting";
    chip.append(...fileLabel({ name: file.name, size: file.size, kind: "" }));
    chip.querySelector(".file-meta").textContent = `${sizeWords(file.size)} · waiting`;
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", `Uploading ${file.name}`);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "btn btn--ghost btn--icon attach-remove";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    remove.title = "Remove this file";
    remove.textContent = "×";
    chip.append(progress, remove);
    return chip;
  }

  // Uploaded: the chip shows what the server made of it (its kind, an image's thumbnail).
  function ready(entry, body) {
    entry.body = body;
    const { chip } = entry;
    chip.dataset.state = "ready";
    chip.dataset.attachmentId = body.id;
    chip.querySelector("progress").remove();
    const [icon, text] = fileLabel(body);
    if (body.thumbnail_url) {
      const img = document.createElement("img");
      Object.assign(img, { src: body.thumbnail_url, alt: "", width: 36, height: 36 });
      chip.querySelector(".file-icon").replaceWith(img);
    } else chip.querySelector(".file-icon").replaceWith(icon);
    chip.querySelector(".file-text").replaceWith(text);
    announce.textContent = `${body.name} attached.`;
    changed();
  }

  function drop(entry) {
    const at = entries.indexOf(entry);
    if (at < 0) return;
    entries.splice(at, 1);
    entry.chip.remove();
    changed();
  }

  // One upload at a time, the next once the one before has its answer.
  let current = null;
  function next() {
    if (current) return;
    current = entries.find((entry) => !entry.body);
    if (current) upload(current);
  }
  function settled(entry) {
    if (current === entry) current = null;
    next();
  }

  function refused(entry, status, body) {
    drop(entry);
    if (status === 429) notice(body.detail || "Too many files uploaded; wait a moment and attach it again.");
    else notice(body.detail || `${entry.file.name} was not attached (${status}).`);
  }

  function upload(entry) {
    const xhr = new XMLHttpRequest();
    entry.xhr = xhr;
    entry.chip.dataset.state = "uploading";
    entry.chip.querySelector(".file-meta").textContent = `${sizeWords(entry.file.size)} · uploading`;
    const progress = entry.chip.querySelector("progress");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100);
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText || "{}"); } catch { body = {}; }
      if (xhr.status === 201) ready(entry, body);
      else refused(entry, xhr.status, body);
      settled(entry);
    });
    xhr.addEventListener("error", () => {
      drop(entry);
      notice(`${entry.file.name} could not be uploaded: the server was not reached.`);
      settled(entry);
    });
    xhr.addEventListener("abort", () => settled(entry));
    xhr.open("POST", `/api/mothership/chats/${chatId}/attachments`);
    xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    const form = new FormData();
    form.append("file", entry.file, entry.file.name || "file");
    xhr.send(form);
  }

  function add(files) {
    for (const file of files) {
      if (entries.length >= maxFiles) {
        notice(`A message may carry ${maxFiles} files at most; ${file.name} was left out.`);
        break;
      }
      // Refused here, before its bytes travel: the server would answer 413 for it.
      if (file.size > maxBytes) {
        notice(`${file.name} is ${sizeWords(file.size)}; a file may be ${sizeWords(maxBytes)} at most.`);
        continue;
      }
      const entry = { file, chip: chipFor(file), xhr: null, body: null };
      entries.push(entry);
      list.append(entry.chip);
    }
    changed();
    next();
  }

  // Remove: an upload under way is abandoned; a stored one is deleted (the server drops unsent
  // files after a day anyway, so a failed DELETE leaves nothing the message would carry).
  list.addEventListener("click", (e) => {
    const remove = e.target.closest(".attach-remove");
    if (!remove) return;
    const entry = entries.find((candidate) => candidate.chip.contains(remove));
    if (!entry) return;
    const neighbour = entry.chip.nextElementSibling || entry.chip.previousElementSibling;
    drop(entry); // first: the next upload may start at once
    if (entry.body) fetch(entry.body.url, { method: "DELETE", headers: { "X-CSRFToken": csrf } }).catch(() => {});
    else entry.xhr?.abort();
    announce.textContent = `${entry.file.name} removed.`;
    (neighbour?.querySelector(".attach-remove") || document.getElementById("composer-input")).focus();
  });

  button.addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    add([...picker.files]);
    picker.value = ""; // the same file may be chosen again
  });

  document.getElementById("composer-input").addEventListener("paste", (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (!files.length) return; // text pastes as text
    e.preventDefault();
    add(files);
  });

  // Dragging files over the page shows where they go; dropped anywhere on it, they are attached.
  const carriesFiles = (e) => [...(e.dataTransfer?.types || [])].includes("Files");
  let depth = 0;
  document.addEventListener("dragenter", (e) => {
    if (!carriesFiles(e)) return;
    depth += 1;
    dropZone.hidden = false;
  });
  document.addEventListener("dragover", (e) => {
    if (!carriesFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    dropZone.hidden = false;
  });
  document.addEventListener("dragleave", (e) => {
    if (!carriesFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) dropZone.hidden = true;
  });
  document.addEventListener("drop", (e) => {
    if (!carriesFiles(e)) return;
    e.preventDefault(); // never opened in place of the page
    depth = 0;
    dropZone.hidden = true;
    add([...e.dataTransfer.files]);
  });

  return {
    uploading: () => entries.some((entry) => !entry.body),
    count: () => entries.length,
    // The uploaded files, as the server described them, in the order they were added.
    files: () => entries.filter((entry) => entry.body).map((entry) => entry.body),
    // Sent: their chips go (those files now belong to the message); one added meanwhile stays.
    sent(ids) {
      for (const entry of entries.filter((candidate) => ids.includes(candidate.body?.id))) drop(entry);
      changed();
    },
  };
}
