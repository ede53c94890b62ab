// Math in replies: $…$ inline and $$…$$ display, typeset by KaTeX (MathML for assistive
// technology, HTML for the eye). The rules are pandoc's, as the share page's parser applies them
// (mdit_py_plugins.dollarmath, allow_space and allow_digits off): no space just inside either
// dollar, no digit just before the opening one or just after the closing one, so "$5 and $10"
// stays text.
import katex from "../vendor/katex/katex.js";

const SPACE = /\s/;
const DIGIT = /\d/;

// A dollar after an odd number of backslashes is a literal one.
function escaped(src, at) {
  let slashes = 0;
  while (at - slashes - 1 >= 0 && src[at - slashes - 1] === "\\") slashes += 1;
  return slashes % 2 === 1;
}

function mathInline(state, silent) {
  const { src } = state;
  const start = state.pos;
  if (src[start] !== "$") return false;
  const next = src[start + 1];
  if (next === undefined || SPACE.test(next)) return false;
  if (start > 0 && DIGIT.test(src[start - 1])) return false;
  if (escaped(src, start)) return false;
  const double = next === "$";
  let from = start + (double ? 2 : 1);
  let end;
  for (;;) {
    end = src.indexOf("$", from);
    if (end < 0) return false;
    if (escaped(src, end)) {
      from = end + 1;
      continue;
    }
    if (double) {
      if (end + 1 >= src.length) return false;
      if (src[end + 1] !== "$") {
        from = end + 1;
        continue;
      }
      end += 1;
    }
    break;
  }
  if (SPACE.test(src[end - 1])) return false;
  if (end + 1 < src.length && DIGIT.test(src[end + 1])) return false;
  const tex = double ? src.slice(start + 2, end - 1) : src.slice(start + 1, end);
  if (!tex) return false;
  if (!silent) {
    const token = state.push(double ? "math_inline_double" : "math_inline", "math", 0);
    token.content = tex;
    token.markup = double ? "$$" : "$";
  }
  state.pos = end + 1;
  return true;
}

// ``$$`` opening a line, to a line that ends with ``$$`` (no blank line between). With
// ``open`` (the reply still being written), a block not closed yet runs to the end of the text
// and is shown as its TeX until it closes; a finished reply shows an unclosed one as text.
function mathBlock(open) {
  return (state, startLine, endLine, silent) => {
    if (state.sCount[startLine] - state.blkIndent >= 4) return false; // an indented code block
    const startPos = state.bMarks[startLine] + state.tShift[startLine];
    let end = state.eMarks[startLine];
    if (startPos + 2 > end || state.src.slice(startPos, startPos + 2) !== "$$") return false;
    let closed = false;
    let line = startLine;
    const first = state.src.slice(startPos, end);
    if (first.trim().length > 3) {
      if (first.trimEnd().endsWith("$$")) {
        closed = true;
        end -= 2 + (first.length - first.trimEnd().length);
      } else if (first.slice(2).includes("$$")) {
        return false; // a closing $$ mid-line: not a block
      }
    }
    let blank = false;
    while (!closed) {
      line += 1;
      if (line >= endLine) break;
      const from = state.bMarks[line] + state.tShift[line];
      const text = state.src.slice(from, state.eMarks[line]);
      if (text.trimEnd().endsWith("$$")) {
        closed = true;
        end = state.eMarks[line] - 2 - (text.length - text.trimEnd().length);
      } else if (text.trim() === "") {
        blank = true;
        break;
      }
    }
    if (!closed && (!open || blank)) return false;
    if (silent) return true;
    const last = closed ? line : endLine - 1;
    if (!closed) end = state.eMarks[last];
    const parts = [];
    if (last === startLine) parts.push(state.src.slice(startPos + 2, end));
    else {
      parts.push(state.src.slice(startPos + 2, state.eMarks[startLine]));
      for (let n = startLine + 1; n < last; n += 1) parts.push(state.src.slice(state.bMarks[n], state.eMarks[n]));
      parts.push(state.src.slice(state.bMarks[last], end));
    }
    state.line = last + 1;
    const token = state.push("math_block", "math", 0);
    token.block = true;
    token.content = parts.join("\n");
    token.markup = "$$";
    token.map = [startLine, state.line];
    token.meta = { pending: !closed };
    return true;
  };
}

const typeset = new Map(); // (display, TeX) -> HTML: a growing reply typesets the same math on every frame

function texToHtml(tex, displayMode) {
  const key = `${displayMode ? "D" : "I"}${tex}`;
  let html = typeset.get(key);
  if (html !== undefined) return html;
  try {
    html = katex.renderToString(tex, {
      displayMode,
      output: "htmlAndMathml",
      throwOnError: false, // a TeX error is shown as the TeX, marked
      trust: false, // no \href, \url, \includegraphics or \html*
      strict: "ignore",
      maxSize: 20,
      maxExpand: 500,
    });
    // Its style attributes renamed before any parser sees them (the policy refuses them even in
    // the sanitizer's inert document); ``applyMathStyles`` sets what is allowed of them.
    html = html.replace(/ style="([^"]*)"/g, ' data-math-style="$1"');
  } catch {
    html = `<code class="math-error">${escapeHtml(tex)}</code>`;
  }
  if (typeset.size >= 500) typeset.clear();
  typeset.set(key, html);
  return html;
}

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

export function mathPlugin(md, { open = false } = {}) {
  md.inline.ruler.before("escape", "math_inline", mathInline);
  md.block.ruler.before("fence", "math_block", mathBlock(open), { alt: ["paragraph", "reference", "blockquote", "list"] });
  const rules = md.renderer.rules;
  rules.math_inline = (tokens, i, options, env) => {
    env.math = true;
    return texToHtml(tokens[i].content.trim(), false);
  };
  rules.math_inline_double = (tokens, i, options, env) => {
    env.math = true;
    return texToHtml(tokens[i].content.trim(), true);
  };
  rules.math_block = (tokens, i, options, env) => {
    const { content, meta } = tokens[i];
    if (meta?.pending) return `<div class="math-block math-block--pending">${escapeHtml(content.trim())}</div>\n`;
    env.math = true;
    return `<div class="math-block">${texToHtml(content.trim(), true)}</div>\n`;
  };
}

// What the sanitizer lets through of KaTeX's output: its MathML (the tags and attributes it
// writes), the SVG of its radicals and stretchy arrows, and nothing else beyond the HTML profile.
export const MATH_TAGS = [
  "math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "mpadded",
  "mphantom", "mstyle", "msup", "msub", "msubsup", "mfrac", "msqrt", "mroot", "mover", "munder",
  "munderover", "mtable", "mtr", "mtd", "menclose", "mglyph", "svg", "path", "line",
]; // prettier-ignore
export const MATH_ATTRS = [
  "xmlns", "display", "encoding", "mathvariant", "mathsize", "mathcolor", "mathbackground",
  "stretchy", "fence", "separator", "lspace", "rspace", "minsize", "maxsize", "largeop",
  "accent", "accentunder", "linethickness", "scriptlevel", "displaystyle", "depth", "voffset",
  "columnalign", "columnspacing", "columnlines", "rowspacing", "rowlines", "notation", "linebreak",
  "viewbox", "preserveaspectratio", "d", "x1", "y1", "x2", "y2", "stroke-width",
]; // prettier-ignore

// KaTeX places its HTML with style attributes, which the Content-Security-Policy refuses in
// markup: they travel as a data attribute, and only these properties with plain lengths or
// colours are set, through the CSSOM (which the policy does not govern).
const STYLE_PROPERTIES = new Set([
  "height", "width", "min-width", "top", "bottom", "left", "position", "vertical-align",
  "margin", "margin-top", "margin-left", "margin-right", "padding-left",
  "border-style", "border-width", "border-color", "border-top-width", "border-bottom-width",
  "border-right-width", "border-right-style", "color", "background-color",
]); // prettier-ignore
const LENGTH = String.raw`-?(?:\d+\.?\d*|\.\d+)(?:em|ex|pt|px|%)?`;
const STYLE_VALUE = new RegExp(String.raw`^(?:${LENGTH}(?: ${LENGTH})?|calc\(100% - ${LENGTH}\)|#[0-9a-f]{3,8}|[a-z]+)$`, "i");

function declarations(style) {
  const kept = [];
  for (const part of style.split(";")) {
    const colon = part.indexOf(":");
    if (colon < 0) continue;
    const name = part.slice(0, colon).trim().toLowerCase();
    const value = part.slice(colon + 1).trim();
    if (STYLE_PROPERTIES.has(name) && STYLE_VALUE.test(value)) kept.push([name, value]);
  }
  return kept;
}

export function applyMathStyles(root) {
  for (const element of root.querySelectorAll("[data-math-style]")) {
    for (const [name, value] of declarations(element.getAttribute("data-math-style"))) element.style.setProperty(name, value);
    element.removeAttribute("data-math-style");
  }
}
