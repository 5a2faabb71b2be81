import { ApiError, download, getJSON, request, sendJSON } from "../api.js";
import { SeriesChart } from "../chart.js";
import { errorBox, fmtBytes, fmtNumber, fmtTime, h, replace, statusBadge } from "../dom.js";
import { layerTable } from "../layers.js";
import { followEvents } from "../sse.js";
import { LogPanel } from "./logs.js";
import { ReportPanel } from "./report.js";
import { modelPanel } from "./model.js";

const CHARTS = [
  { id: "loss", title: "Loss", names: ["loss", "val_loss"], log: true },
  { id: "accuracy", title: "Accuracy", names: ["accuracy", "val_accuracy"] },
  { id: "lr", title: "Learning rate", names: ["lr"] },
  { id: "grad_norm", title: "Gradient norm", names: ["grad_norm"] },
];
const ENDED = new Set(["succeeded", "failed", "canceled"]);

export function notFound(root, what, id) {
  replace(root, h("section", { class: "notfound", "data-testid": "not-found" },
    h("h1", {}, `${what} not found`),
    h("p", {}, `There is no ${what.toLowerCase()} ${id} in your team.`),
    h("a", { href: "/ui/" }, "Back to the jobs")));
}

// One job, live: status, progress, charts, checkpoints, actions, spec, timeline.
export async function jobView(root, { params, signal }) {
  const [jobId] = params;
  const base = `/v1/jobs/${encodeURIComponent(jobId)}`;
  let job;
  try {
    job = await getJSON(base, { signal });
  } catch (err) {
    if (signal.aborted) return;
    if (err instanceof ApiError && err.status === 404) return notFound(root, "Job", jobId);
    return replace(root, errorBox(err));
  }

  const series = new Map(); // name -> Map(step -> {epoch, value})
  const header = h("div", { class: "job-header" });
  const progress = h("div", { class: "progress-block" });
  const actions = h("div", { class: "actions" });
  const actionMessage = h("div", { class: "action-message", "data-testid": "action-message" });
  const charts = h("div", { class: "charts" });
  const checkpoints = h("tbody");
  const timeline = h("tbody");
  const spec = h("pre", { class: "spec", "data-testid": "spec" });
  const layers = h("div", { class: "layer-table" });
  const logs = h("div");
  const reportBox = h("div");
  const model = h("section", { "data-testid": "model", hidden: true });
  let modelShown = false;
  replace(
    root,
    header,
    progress,
    h("div", { class: "toolbar" }, actions, actionMessage),
    charts,
    model,
    h("section", {}, h("h2", {}, "Checkpoints"),
      h("table", { "data-testid": "checkpoints" },
        h("thead", {}, h("tr", {}, ["Step", "Epoch", "Metrics", "Best", "Size", ""].map((c) => h("th", {}, c)))),
        checkpoints)),
    reportBox,
    logs,
    h("div", { class: "two-col" },
      h("section", {}, h("h2", {}, "Status timeline"),
        h("table", { "data-testid": "timeline" },
          h("thead", {}, h("tr", {}, ["When", "Transition", "Reason", "Attempt"].map((c) => h("th", {}, c)))),
          timeline)),
      h("section", {}, h("h2", {}, "Resolved spec"), spec)),
    h("section", {}, h("h2", {}, "Layers"), layers),
  );
  // spec.metrics (f1_macro, auroc, mae, ...): a chart each, training and validation.
  const extra = (job.spec?.metrics || []).map((m) => ({ id: m, title: m, names: [m, `val_${m}`] }));
  const chartObjs = [...CHARTS, ...extra].map((c) => new SeriesChart(charts, c));
  const report = new ReportPanel(reportBox, base, signal);
  const logPanel = new LogPanel(logs, signal);
  let live = null; // the latest `progress` event: where the running epoch is
  signal.addEventListener("abort", () => chartObjs.forEach((c) => c.destroy()));

  const cancel = h("button", { type: "button" }, "Cancel");
  const retry = h("button", { type: "button" }, "Retry");
  cancel.addEventListener("click", () => act("cancel"));
  retry.addEventListener("click", () => act("retry"));
  replace(actions, cancel, retry, h("a", { class: "button", href: `/ui/compare?jobs=${jobId}` }, "Compare…"));

  // Epochs completed as the metrics show them: a metric point comes at each epoch's
  // end, the job row's progress with the next heartbeat (up to ~1 s later). Only for a
  // first attempt: a resumed one may re-train epochs whose points an earlier one left.
  function epochsFromMetrics() {
    let last = -1;
    for (const points of series.values()) for (const p of points.values()) last = Math.max(last, p.epoch);
    return last + 1;
  }

  function renderProgress() {
    const row = job.progress || { epoch: 0, epochs: 0, step: 0 };
    const p = job.status === "running" && job.attempt === 1 ? { ...row, epoch: Math.min(row.epochs, Math.max(row.epoch, epochsFromMetrics())) } : row;
    // Inside an epoch: the `progress` event of the current attempt, if newer.
    const inEpoch = live && job.status === "running" && live.attempt === job.attempt && live.step >= p.step ? live : null;
    const done = inEpoch ? inEpoch.epoch + inEpoch.batch / Math.max(inEpoch.steps_per_epoch, 1) : p.epoch;
    replace(
      progress,
      h("progress", { max: Math.max(p.epochs, 1), value: Math.max(done, p.epoch) }),
      h("span", { "data-testid": "progress", "data-epoch": String(p.epoch) },
        `epoch ${p.epoch}/${p.epochs} · step ${inEpoch ? inEpoch.step : p.step}`),
      inEpoch ? h("span", { class: "muted" },
        `epoch ${inEpoch.epoch + 1}: batch ${inEpoch.batch}/${inEpoch.steps_per_epoch}, loss ${fmtNumber(inEpoch.loss)}`) : null,
    );
  }

  // The model's layers, as the plan of the job's spec shows them (POST /v1/specs/validate).
  async function loadLayers() {
    try {
      const result = await sendJSON("POST", "/v1/specs/validate", { spec: job.spec }, { signal });
      replace(layers, layerTable(result.plan.layers));
    } catch (err) {
      if (!signal.aborted) replace(layers, h("p", { class: "muted" }, "The layer table is not available (the job's dataset is gone?)."));
    }
  }

  function renderJob() {
    renderProgress();
    if (!modelShown && job.export?.status === "ready") {
      modelShown = true;
      model.hidden = false;
      modelPanel(model, job, base, signal);
    }
    replace(
      header,
      h("h1", {}, job.name || job.id, " ", statusBadge(job.status)),
      h("p", { class: "muted" }, `id ${job.id} · attempt ${job.attempt} · created ${fmtTime(job.created_at)}`,
        job.sweep_id ? [" · ", h("a", { href: `/ui/sweeps/${encodeURIComponent(job.sweep_id)}` }, "its sweep")] : null,
        job.spec?.warm_start ? [" · warm-started from ", h("a", { href: `/ui/jobs/${encodeURIComponent(job.spec.warm_start.job_id)}`, "data-testid": "warm-start-source" }, job.spec.warm_start.job_id)] : null),
      h("p", { "data-testid": "reason" },
        job.status_reason ? `Reason: ${job.status_reason}` : "",
        job.queue_reason ? `Waiting: ${job.queue_reason}` : "",
        job.cancel_requested && !ENDED.has(job.status) ? " (cancel requested)" : ""),
      job.error ? h("div", { class: "error", role: "alert", "data-testid": "job-error" }, job.error) : null,
      job.export ? h("p", { "data-testid": "export-status" }, job.export.status === "ready"
        ? `Model: exported (ONNX, ${fmtBytes(job.export.onnx_bytes)})`
        : `Model: not exported — ${job.export.error}`) : null,
    );
    cancel.disabled = ENDED.has(job.status);
    retry.disabled = !["failed", "canceled"].includes(job.status);
    replace(timeline, (job.transitions || []).map((t) => h("tr", {},
      h("td", {}, fmtTime(t.at)),
      h("td", {}, `${t.from_status ?? "—"} → ${t.to_status}`),
      h("td", {}, t.reason ?? ""),
      h("td", {}, String(t.attempt)))));
    report.update(job);
    const specText = JSON.stringify(job.spec, null, 2);
    if (spec.textContent !== specText) spec.textContent = specText;
  }

  async function act(verb) {
    replace(actionMessage);
    try {
      job = await getJSON(`${base}/${verb}`, { method: "POST", signal });
      replace(actionMessage, verb === "cancel" ? "Cancel requested." : "Queued again.");
      renderJob();
      if (verb === "retry") startFollowing();
    } catch (err) {
      if (signal.aborted) return;
      // The API's answer as it is, e.g. a 409 "The job has already ended (succeeded)."
      replace(actionMessage, errorBox(err));
    }
  }

  async function loadCheckpoints() {
    const items = [];
    let cursor = null;
    do {
      const q = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : "?limit=100";
      const page = await getJSON(`${base}/checkpoints${q}`, { signal });
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor && !signal.aborted);
    replace(checkpoints, items.length ? items.map((c) => {
      const link = h("a", { href: "#", "data-checkpoint": String(c.id) }, "download");
      link.addEventListener("click", (e) => {
        e.preventDefault();
        download(`${base}/checkpoints/${c.id}/download`, `${job.id}-step${c.step}.safetensors`)
          .catch((err) => replace(actionMessage, errorBox(err)));
      });
      return h("tr", {},
        h("td", {}, String(c.step)),
        h("td", {}, String(c.epoch + 1)),
        h("td", { class: "small" }, Object.entries(c.metrics).map(([k, v]) => `${k} ${fmtNumber(v)}`).join(" · ")),
        h("td", {}, c.is_best ? h("span", { class: "best", title: "best by checkpointing.monitor" }, "★ best") : ""),
        h("td", {}, fmtBytes(c.size_bytes)),
        h("td", {}, link));
    }) : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No checkpoints yet.")));
  }

  // Refreshes, at most one in flight and a few per second, whatever the event rate.
  function throttled(fn, ms) {
    let timer = null;
    let again = false;
    return () => {
      if (timer) {
        again = true;
        return;
      }
      const run = async () => {
        again = false;
        try {
          await fn();
        } catch (err) {
          if (!signal.aborted && !(err instanceof ApiError && err.status === 401)) {
            replace(actionMessage, errorBox(err));
          }
        }
        timer = setTimeout(() => {
          timer = null;
          if (again && !signal.aborted) run();
        }, ms);
      };
      timer = 1;
      run();
    };
  }
  const refreshJob = throttled(async () => {
    job = await getJSON(base, { signal });
    renderJob();
  }, 500);
  const refreshCheckpoints = throttled(loadCheckpoints, 1000);
  const redraw = throttled(async () => {
    for (const c of chartObjs) c.update(series);
  }, 250);

  function onEvent(kind, data) {
    if (kind === "metrics") {
      for (const s of data.series) {
        let points = series.get(s.name);
        if (!points) series.set(s.name, (points = new Map()));
        for (const p of s.points) points.set(p.step, { epoch: p.epoch, value: p.value });
      }
      redraw();
      renderProgress();
      refreshJob();
    } else if (kind === "progress") {
      live = data;
      renderProgress();
    } else if (kind === "log") {
      logPanel.add(data.lines);
    } else if (kind === "checkpoint") {
      refreshCheckpoints();
    } else if (kind === "status" || kind === "end") {
      refreshJob();
      if (kind === "end") refreshCheckpoints();
    }
  }

  let following = false;
  async function startFollowing() {
    if (following) return;
    following = true;
    try {
      // From the first event: the history, then live (resuming by Last-Event-ID).
      await followEvents(`${base}/events`, { onEvent, signal });
    } catch (err) {
      if (!signal.aborted && !(err instanceof ApiError && err.status === 401)) {
        replace(actionMessage, errorBox(err));
      }
    } finally {
      following = false;
    }
  }

  renderJob();
  refreshCheckpoints();
  loadLayers();
  startFollowing();
}
