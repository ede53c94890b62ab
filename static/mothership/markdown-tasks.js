// Task lists: a list item that starts "[ ] " or "[x] " shows a checkbox, disabled (a reply is not
// a form), inside a label with the item's own text, as the share page's parser writes it
// (mdit_py_plugins.tasklists with a label).
const MARKER = /^\[([ xX])\][ \t\n\v\f\r]+/;

function taskItems(state) {
  const { tokens } = state;
  for (let i = 2; i < tokens.length; i += 1) {
    const inline = tokens[i];
    if (inline.type !== "inline" || tokens[i - 1].type !== "paragraph_open" || tokens[i - 2].type !== "list_item_open") continue;
    const marker = MARKER.exec(inline.content);
    const first = inline.children?.[0];
    if (!marker || first?.type !== "text" || !first.content.startsWith(marker[0].slice(0, 3))) continue;
    first.content = first.content.slice(3);
    inline.content = inline.content.slice(3);
    const box = new state.Token("task_checkbox", "input", 0);
    box.meta = { checked: marker[1] !== " " };
    inline.children.unshift(new state.Token("task_label_open", "label", 1), box);
    inline.children.push(new state.Token("task_label_close", "label", -1));
    tokens[i - 2].attrJoin("class", "task-list-item");
    for (let j = i - 3; j >= 0; j -= 1) {
      if (tokens[j].level === tokens[i - 2].level - 1) {
        if (!tokens[j].attrGet("class")) tokens[j].attrJoin("class", "contains-task-list");
        break;
      }
    }
  }
}

export function taskListPlugin(md) {
  md.core.ruler.after("inline", "task_lists", taskItems);
  md.renderer.rules.task_label_open = () => "<label>";
  md.renderer.rules.task_label_close = () => "</label>";
  md.renderer.rules.task_checkbox = (tokens, i) =>
    `<input class="task-list-item-checkbox" type="checkbox" disabled${tokens[i].meta.checked ? " checked" : ""}>`;
}
