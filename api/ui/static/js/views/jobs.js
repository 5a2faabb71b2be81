import { getJSON, poll } from "../api.js";
import { numeric } from "../chart.js";
import {
  bestMetricText,
  errorBox,
  fmtAge,
  fmtDuration,
  fmtNumber,
  h,
  replace,
  secondsBetween,
  statusBadge,
} from "../dom.js";

const STATUSES = ["queued", "running", "succeeded", "failed", "canceled"];
const PAGE_SIZE = 20;
const ENDED = new Set(["succeeded", "failed", "canceled"]);
const hasBest = (job) => "best_metric" in job || "best" in job;

// The monitored metric of a full job (as GET /v1/jobs/{id} has it): early stopping's,
// else checkpointing's; its direction as Keras resolves mode "auto".
function monitorOf(spec) {
  const part = spec?.early_stopping || spec?.checkpointing;
  if (!part?.monitor) return null;
  let mode = part.mode;
  if (!mode || mode === "auto") {
    const name = part.monitor.replace(/^val_/, "");
    mode = name !== "loss" && /acc|auc|auroc|precision|recall|f1|r2/.test(name) ? "max" : "min";
  }
  return { name: part.monitor, mode };
}

// Where the list has no best metric of its own, it is read from the job's metric
// series (once for an ended job, at most every 10 s for a running one).
const bestCache = new Map(); // job id -> {text, at, ended}
async function bestFromMetrics(job, signal) {
  const monitor = monitorOf(job.spec);
  const cached = bestCache.get(job.id);
  if (!monitor || !job.progress?.epoch) return;
  if (cached && (cached.ended || Date.now() - cached.at < 10_000)) return;
  bestCache.set(job.id, { text: cached?.text ?? "…", at: Date.now(), ended: ENDED.has(job.status) });
  let body;
  try {
    body = await getJSON(`/v1/jobs/${encodeURIComponent(job.id)}/metrics?name=${encodeURIComponent(monitor.name)}`, { signal });
  } catch (err) {
    bestCache.delete(job.id); // asked again at the next refresh
    throw err;
  }
  let best = null;
  for (const p of body.series[0]?.points ?? []) {
    const v = numeric(p.value);
    if (v !== null && (best === null || (monitor.mode === "max" ? v > best.value : v < best.value))) best = { value: v, epoch: p.epoch };
  }
  const text = best ? `${monitor.name} ${fmtNumber(best.value)} (epoch ${best.epoch + 1})` : "–";
  bestCache.set(job.id, { text, at: Date.now(), ended: ENDED.has(job.status) });
}

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
        job.sweep_id ? h("a", { class: "small", href: `/ui/sweeps/${encodeURIComponent(job.sweep_id)}` }, " (sweep)") : null,
        job.pack_id ? h("span", { class: "muted small", title: `trains in pack ${job.pack_id} with other trials of its sweep`, "data-testid": "pack" }, ` pack ${job.pack_id.slice(0, 8)}`) : null),
      h("td", { "data-testid": "progress" }, p.epochs ? `${p.epoch}/${p.epochs}` : "–"),
      h("td", {}, fmtAge(job.created_at)),
      h("td", {}, job.started_at ? fmtDuration(secondsBetween(job.started_at, end)) : "–"),
      h("td", { "data-testid": "best" }, hasBest(job) ? bestMetricText(job) : bestCache.get(job.id)?.text ?? "–"),
    );
  }

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (status) q.set("status", status);
    if (cursor) q.set("cursor", cursor);
    const page = await getJSON(`/v1/jobs?${q}`, { signal });
    if (signal.aborted) return;
    await Promise.all(page.items.filter((j) => !hasBest(j)).map((j) => bestFromMetrics(j, signal).catch(() => {})));
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
