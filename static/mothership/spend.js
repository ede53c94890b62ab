// The dashboard's spend panel: this month and today against the budgets, with the server's
// notices (80 % and 100 %); owners set the budgets here (PUT …/budget, the API's own endpoint).
import { dollars } from "./live.js";

const REFRESH_MS = 30000;


function against(spent, limit) {
  return limit === null ? dollars(spent) : `${dollars(spent)} of ${dollars(limit)}`;
}

export function spendPanel(root) {
  if (!root) return;
  const url = `/api/mothership/workspaces/${root.dataset.workspace}/budget`;
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]")?.value || "";
  const form = root.querySelector("#budget-form");
  const status = root.querySelector("#budget-status");

  function show(budget) {
    root.querySelector("#spend-month").textContent = against(budget.spent_month_usd, budget.monthly_usd);
    root.querySelector("#spend-today").textContent = against(budget.spent_today_usd, budget.member_daily_usd);
    root.querySelector("#spend-workspace-today").textContent = dollars(budget.workspace_spent_today_usd);
    root.querySelector("#spend-workspace-week").textContent = dollars(budget.workspace_spent_7d_usd);
    const notices = root.querySelector("#spend-notices");
    notices.replaceChildren(
      ...budget.notices.map((notice) => {
        const li = document.createElement("li");
        li.className = `spend-notice spend-notice--${notice.level}`;
        li.textContent = notice.text;
        return li;
      }),
    );
  }

  async function refresh() {
    if (document.visibilityState !== "visible") return;
    const response = await fetch(url, { credentials: "same-origin" }).catch(() => null);
    if (response?.ok) show(await response.json());
  }
  setInterval(refresh, REFRESH_MS);
  document.addEventListener("visibilitychange", refresh);
  root.addEventListener("spend:refresh", refresh); // a reply ended on a tile

  form?.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const value = (name) => {
      const raw = form.elements[name].value.trim();
      return raw === "" ? null : Number(raw);
    };
    status.textContent = "Saving…";
    const response = await fetch(url, {
      method: "PUT",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ monthly_usd: value("monthly_usd"), member_daily_usd: value("member_daily_usd") }),
    }).catch(() => null);
    if (!response) { status.textContent = "Not saved: the server did not answer."; return; }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) { status.textContent = `Not saved: ${body.detail || response.statusText}`; return; }
    show(body);
    status.textContent = "Saved.";
  });
}
