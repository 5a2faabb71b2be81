import { ApiError, getJSON } from "../api.js";
import { errorBox, fmtAge, fmtNumber, h, replace, statusBadge } from "../dom.js";

// The team's sweeps, newest first; each links to its page (leaderboard, scatter, curves).
export function sweepsView(root, { signal }) {
  const body = h("tbody");
  const message = h("div", { "data-testid": "sweeps-message" });
  const more = h("div", { class: "pager" });
  replace(root, h("h1", {}, "Sweeps"), message,
    h("p", { class: "muted" }, "Start one with ", h("code", {}, "trainforge sweeps submit sweep.yaml"),
      " or POST /v1/sweeps (see docs/sweeps.md)."),
    h("table", { "data-testid": "sweeps" },
      h("thead", {}, h("tr", {}, ["Name", "Id", "Status", "Trials", "Objective", "Best", "Started"].map((c) => h("th", {}, c)))),
      body),
    more);

  function row(s) {
    const best = s.best ?? {};
    return h("tr", { "data-sweep": s.id },
      h("td", {}, h("a", { href: `/ui/sweeps/${encodeURIComponent(s.id)}` }, s.name || s.id.slice(0, 8))),
      h("td", {}, h("code", {}, s.id)),
      h("td", {}, statusBadge(s.status), s.status_reason ? h("span", { class: "muted small" }, ` ${s.status_reason}`) : null),
      h("td", {}, `${s.trials_ended ?? 0}/${s.max_trials ?? "–"}`),
      h("td", {}, `${s.objective?.metric ?? "–"} (${s.objective?.mode ?? ""})`),
      h("td", {}, fmtNumber(best.objective ?? null)),
      h("td", {}, fmtAge(s.created_at)));
  }

  let items = [];
  async function load(cursor = null) {
    try {
      const page = await getJSON(`/v1/sweeps?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { signal });
      items = cursor ? [...items, ...page.items] : page.items;
      replace(body, items.length ? items.map(row) : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No sweeps yet.")));
      const next = h("button", { type: "button" }, "More");
      next.addEventListener("click", () => load(page.next_cursor));
      replace(more, page.next_cursor ? next : null);
    } catch (err) {
      if (!signal.aborted && !(err instanceof ApiError && err.status === 401)) replace(message, errorBox(err));
    }
  }
  load();
}
