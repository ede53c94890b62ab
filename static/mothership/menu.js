// Menus: a <details class="menu"> whose summary is the button. One opens at a time; a click
// outside, Esc (focus back on its button) or choosing an item closes it. Esc inside a menu is the
// menu's: it never reaches the page's own Esc (which stops a running reply).
export function menus(scope = document) {
  const all = [...scope.querySelectorAll("details.menu")];
  const close = (menu, focus = false) => {
    if (!menu.open) return;
    menu.open = false;
    if (focus) menu.querySelector("summary")?.focus();
  };
  for (const menu of all) {
    menu.addEventListener("toggle", () => {
      if (!menu.open) return;
      for (const other of all) if (other !== menu) close(other);
      menu.querySelector(".menu-list :is(button, a):not([disabled])")?.focus();
    });
    menu.addEventListener("keydown", (e) => {
      if (e.key !== "Escape" || !menu.open) return;
      e.stopPropagation();
      close(menu, true);
    });
    menu.querySelector(".menu-list")?.addEventListener("click", (e) => {
      if (e.target.closest("button, a")) close(menu);
    });
  }
  document.addEventListener("click", (e) => {
    for (const menu of all) if (!menu.contains(e.target)) close(menu);
  });
}
