import { getJSON, poll } from "../api.js";
import {
  bestMetricText,
  errorBox,
  fmtAge,
  fmtDuration,
  h,
  replace,
  secondsBetween,
  statusBadge,
} from "../dom.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "canceled"];
const PAGE_SIZE = 20;

// The team's jobs, newest first; filter, pages (cursor), rows refreshed every 2 s.
export function jobsView(root, { query, signal, navigate }) {
  const status = query.get("status") || "";
  const cursor = query.get("cursor") || "";
  const previous = (query.get("prev") || "").split(",").filter(Boolean); // cursors behind us
  const selected = new Set();

  const filter = h(
    "select",
    { id: "status-filter", "aria-label": "Status" },
    h("option", { value: "" }, "all statuses"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)),
  );
  filter.addEventListener("change", () => navigate(filter.value ? `/ui/?status=${filter.value}` : "/ui/"));
  const compare = h("button", { type: "button", disabled: true }, "Compare selected");
  compare.addEventListener("click", () => navigate(`/ui/compare?jobs=${[...selected].join(",")}`));
  const body = h("tbody");
  const message = h("div");
  const pager = h("div", { class: "pager" });
  replace(
    root,
    h("div", { class: "toolbar" }, h("h1", {}, "Jobs"), h("label", {}, "Status ", filter), compare,
      h("a", { class: "button", href: "/ui/new" }, "New job")),
    message,
    h("table", { class: "jobs", "data-testid": "jobs" },
      h("thead", {}, h("tr", {}, ["", "Status", "Name", "Progress", "Age", "Duration", "Best"].map((c) => h("th", {}, c)))),
      body),
    pager,
  );

  const pageUrl = (c, prev) => {
    const q = new URLSearchParams();
    if (status) q.set("status", status);
    if (c) q.set("cursor", c);
    if (prev.length) q.set("prev", prev.join(","));
    const s = q.toString();
    return s ? `/ui/?${s}` : "/ui/";
  };

  function row(job) {
    const box = h("input", { type: "checkbox", "aria-label": `select ${job.id}`, checked: selected.has(job.id) });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(job.id);
      else selected.delete(job.id);
      compare.disabled = selected.size < 2;
    });
    const p = job.progress || {};
    const end = job.finished_at || (job.status === "running" ? null : job.started_at);
    return h(
      "tr",
      { "data-job-id": job.id },
      h("td", {}, box),
      h("td", {}, statusBadge(job.status), job.status_reason ? h("span", { class: "muted small" }, ` ${job.status_reason}`) : null),
      h("td", {}, h("a", { href: `/ui/jobs/${encodeURIComponent(job.id)}` }, job.name || job.id),
        job.sweep_id ? h("a", { class: "small", href: `/ui/sweeps/${encodeURIComponent(job.sweep_id)}` }, " (sweep)") : null),
      h("td", { "data-testid": "progress" }, p.epochs ? `${p.epoch}/${p.epochs}` : "–"),
      h("td", {}, fmtAge(job.created_at)),
      h("td", {}, job.started_at ? fmtDuration(secondsBetween(job.started_at, end)) : "–"),
      h("td", {}, bestMetricText(job)),
    );
  }

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (status) q.set("status", status);
    if (cursor) q.set("cursor", cursor);
    const page = await getJSON(`/v1/jobs?${q}`, { signal });
    if (signal.aborted) return;
    replace(message);
    replace(body, page.items.length ? page.items.map(row) : h("tr", {}, h("td", { colspan: 7, class: "muted" },
      status ? `No ${status} jobs.` : "No jobs yet: submit one from New job.")));
    const back = previous.length ? pageUrl(previous[previous.length - 1] === "-" ? "" : previous[previous.length - 1], previous.slice(0, -1)) : null;
    replace(
      pager,
      back || cursor ? h("a", { class: "button", href: back || pageUrl("", []) }, "← Newer") : null,
      page.next_cursor ? h("a", { class: "button", href: pageUrl(page.next_cursor, [...previous, cursor || "-"]) }, "Older →") : null,
    );
  }

  poll(load, 2000, signal, (err) => replace(message, errorBox(err)));
}
