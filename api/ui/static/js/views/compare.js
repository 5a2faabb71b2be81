import { ApiError, getJSON } from "../api.js";
import { SeriesChart } from "../chart.js";
import { errorBox, h, replace } from "../dom.js";

const METRICS = ["val_accuracy", "val_loss", "accuracy", "loss", "lr", "grad_norm", "epoch_seconds", "samples_per_second"];

// Every leaf of a spec as dotted path -> JSON text.
export function flatten(value, prefix = "", out = new Map()) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.set(prefix, JSON.stringify(value));
  }
  return out;
}

// Several jobs: one metric overlaid (by epoch), and the spec fields that differ.
export async function compareView(root, { query, signal, navigate }) {
  const ids = (query.get("jobs") || "").split(",").map((s) => s.trim()).filter(Boolean);
  const metric = query.get("metric") || "val_accuracy";
  if (!ids.length) {
    replace(root, h("h1", {}, "Compare"), h("p", {}, "Pick jobs on the jobs page, or open /ui/compare?jobs=a,b."));
    return;
  }
  const jobs = [];
  const missing = [];
  for (const id of ids) {
    try {
      jobs.push(await getJSON(`/v1/jobs/${encodeURIComponent(id)}`, { signal }));
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 404) missing.push(id);
      else return replace(root, errorBox(err));
    }
  }
  const select = h("select", { id: "metric", "aria-label": "Metric" },
    METRICS.map((m) => h("option", { value: m, selected: m === metric }, m)));
  select.addEventListener("change", () => navigate(`/ui/compare?jobs=${ids.join(",")}&metric=${select.value}`, { replaceState: true }));
  const charts = h("div", { class: "charts one" });
  const diff = h("div");
  replace(
    root,
    h("div", { class: "toolbar" }, h("h1", {}, "Compare"), h("label", {}, "Metric ", select)),
    missing.length ? h("div", { class: "error", "data-testid": "not-found" }, `Job not found: ${missing.join(", ")}`) : null,
    charts,
    h("section", {}, h("h2", {}, "Spec differences"), diff),
  );
  if (!jobs.length) return;

  const labels = jobs.map((j) => j.name || j.id.slice(0, 8));
  const unique = labels.map((l, i) => (labels.indexOf(l) === i ? l : `${l} (${jobs[i].id.slice(0, 6)})`));
  const chart = new SeriesChart(charts, { id: "compare", title: metric, names: unique, xLabel: "epoch" });
  signal.addEventListener("abort", () => chart.destroy());
  const byJob = new Map();
  await Promise.all(jobs.map(async (job, i) => {
    const body = await getJSON(`/v1/jobs/${job.id}/metrics?name=${encodeURIComponent(metric)}&max_points=2000`, { signal });
    const points = new Map();
    for (const p of body.series.find((s) => s.name === metric)?.points ?? []) {
      points.set(p.epoch + 1, { epoch: p.epoch, value: p.value }); // x: 1-based epoch
    }
    byJob.set(unique[i], points);
  })).catch((err) => !signal.aborted && charts.append(errorBox(err)));
  if (signal.aborted) return;
  chart.update(byJob);

  const flat = jobs.map((j) => flatten(j.spec));
  const keys = [...new Set(flat.flatMap((f) => [...f.keys()]))].sort();
  const differing = keys.filter((k) => new Set(flat.map((f) => f.get(k) ?? "(absent)")).size > 1);
  replace(diff, differing.length
    ? h("table", { "data-testid": "spec-diff" },
      h("thead", {}, h("tr", {}, h("th", {}, "Field"), jobs.map((j, i) =>
        h("th", {}, h("a", { href: `/ui/jobs/${j.id}` }, unique[i]))))),
      h("tbody", {}, differing.map((k) => h("tr", {}, h("td", {}, h("code", {}, k)),
        flat.map((f) => h("td", {}, f.get(k) ?? "(absent)"))))))
    : h("p", { class: "muted" }, jobs.length > 1 ? "The resolved specs are identical." : "Add a second job to compare specs."));
}
