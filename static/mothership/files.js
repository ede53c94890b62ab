// A message's files under its text: images as thumbnails that open the full image, anything else
// as a chip (name, size, kind) that downloads it. The same markup as the page's own
// (templates/mothership/_message_files.html, mothership/templatetags/attachments.py): the sender's
// new message, another tab's, earlier messages and a reload all look alike.

// A thumbnail's box on the page (CSS px): the image's shape, scaled down to fit, never up.
const PREVIEW = { width: 240, height: 180 };
const BADGES = { image: "IMG", pdf: "PDF", text: "TXT" };

// Django's filesizeformat: "340 bytes", "1.2 KB", "20.0 MB" (a no-break space before the unit).
export function sizeWords(bytes) {
  const units = [["PB", 2 ** 50], ["TB", 2 ** 40], ["GB", 2 ** 30], ["MB", 2 ** 20], ["KB", 2 ** 10]];
  for (const [unit, scale] of units) if (bytes >= scale) return `${(Math.round((bytes / scale) * 10) / 10).toFixed(1)}\u00a0${unit}`;
  return `${bytes}\u00a0${bytes === 1 ? "byte" : "bytes"}`;
}

export function kindWords(file) {
  if (file.kind === "pdf") return file.pages ? `PDF, ${file.pages} page${file.pages === 1 ? "" : "s"}` : "PDF";
  return file.kind === "image" ? "image" : "text";
}

export function previewBox(file) {
  const width = file.width || PREVIEW.width;
  const height = file.height || PREVIEW.height;
  const scale = Math.min(1, PREVIEW.width / width, PREVIEW.height / height);
  return { width: Math.max(1, Math.round(width * scale)), height: Math.max(1, Math.round(height * scale)) };
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// The kind badge, the name and "size · kind": a chip's body, in the composer and in a message.
export function fileLabel(file) {
  const icon = element("span", "file-icon", BADGES[file.kind] || "FILE");
  icon.setAttribute("aria-hidden", "true");
  const name = element("span", "file-name", file.name);
  name.title = file.name; // a long one is cut short on screen
  const text = element("span", "file-text");
  text.append(name, element("span", "file-meta", `${sizeWords(file.size)} · ${kindWords(file)}`));
  return [icon, text];
}

function item(file) {
  const li = element("li", `msg-file msg-file--${file.kind}`);
  const link = document.createElement("a");
  link.href = file.url;
  if (file.thumbnail_url) {
    link.className = "msg-thumb";
    link.target = "_blank";
    link.rel = "noopener";
    const img = document.createElement("img");
    const box = previewBox(file);
    Object.assign(img, { src: file.thumbnail_url, alt: file.name, width: box.width, height: box.height, loading: "lazy", decoding: "async" });
    link.append(img);
  } else {
    link.className = "file-chip";
    link.download = "";
    link.append(...fileLabel(file));
  }
  li.append(link);
  return li;
}

// Under the message's text, once (a bubble may be told twice: the send's answer, then its first event).
export function showFiles(li, files) {
  if (!li || !files?.length || li.querySelector(".msg-files")) return;
  const list = element("ul", "msg-files");
  list.setAttribute("aria-label", "Attached files");
  list.append(...files.map(item));
  li.querySelector(".msg-content").after(list);
}
