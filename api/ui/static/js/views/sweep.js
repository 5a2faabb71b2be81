import { ApiError, getJSON, poll } from "../api.js";
import { SeriesChart, numeric } from "../chart.js";
import { errorBox, fmtNumber, fmtTime, h, replace, statusBadge } from "../dom.js";

const MAX_CURVES = 12; // trial curves overlaid: the best ones

function notFound(root, id) {
  replace(root, h("section", { class: "notfound", "data-testid": "not-found" },
    h("h1", {}, "Sweep not found"), h("p", {}, `There is no sweep ${id} in your team.`),
    h("a", { href: "/ui/" }, "Back to the jobs")));
}

const paramText = (v) => (typeof v === "number" ? fmtNumber(v) : JSON.stringify(v));

// A sweep: leaderboard, objective vs each parameter, the trials' curves overlaid; polled.
export async function sweepView(root, { params, signal }) {
  const [sweepId] = params;
  const base = `/v1/sweeps/${encodeURIComponent(sweepId)}`;
  let sweep;
  try {
    sweep = await getJSON(base, { signal });
  } catch (err) {
    if (signal.aborted) return;
    if (err instanceof ApiError && err.status === 404) return notFound(root, sweepId);
    return replace(root, errorBox(err));
  }
  const header = h("div", { class: "job-header" });
  const board = h("div");
  const packList = h("div", { "data-testid": "packs" });
  const scatter = h("div", { class: "charts" });
  const curves = h("div", { class: "charts one" });
  const message = h("div");
  replace(root, header, message,
    h("section", {}, h("h2", {}, "Leaderboard"), board),
    h("section", {}, h("h2", {}, "Packs"), packList),
    h("section", {}, h("h2", {}, `Objective (${sweep.objective.metric}) vs each parameter`), scatter),
    h("section", {}, h("h2", {}, `Trial curves: ${sweep.objective.metric}`), curves));
  const names = Object.keys(sweep.parameters);
  const charts = new Map();
  let curveChart = null;
  let curveKey = "";
  signal.addEventListener("abort", () => {
    charts.forEach((c) => c.destroy());
    curveChart?.destroy();
  });

  function renderHeader() {
    const o = sweep.objective;
    replace(header,
      h("h1", {}, sweep.name || sweep.id, " ", statusBadge(sweep.status)),
      h("p", { class: "muted" }, `id ${sweep.id} · ${sweep.algorithm.kind} · objective ${o.metric} (${o.mode}) · created ${fmtTime(sweep.created_at)}`),
      h("p", {}, `Trials: ${sweep.trials_ended} ended of ${sweep.trials_created} created, at most ${sweep.max_trials}; `,
        `${sweep.epochs_trained} epochs trained`, sweep.status_reason ? ` · ${sweep.status_reason}` : ""),
      sweep.best ? h("p", {}, "Best: ", h("a", { href: `/ui/jobs/${sweep.best.job_id}` }, `trial ${sweep.best.trial_number}`),
        ` ${o.metric} ${fmtNumber(sweep.best.objective)} with `, names.map((n) => `${n}=${paramText(sweep.best.params[n])}`).join(", ")) : null,
      h("p", { class: "muted", "data-testid": "execution" }, `Execution: pack ${sweep.execution.pack}`,
        sweep.execution.pack === "auto" ? ` (at most ${sweep.execution.max_pack} trials a pack) · ${sweep.packs.length} pack(s) formed` : "",
        sweep.packing_off_reason ? ` · packing off: ${sweep.packing_off_reason}` : ""),
      sweep.error ? h("div", { class: "error" }, sweep.error) : null);
  }

  // Which trials trained together: one row per pack, its members by trial number.
  function renderPacks() {
    const packs = sweep.packs ?? [];
    const label = new Map(packs.map((p, i) => [p.id, `P${i + 1}`]));
    if (!packs.length) {
      replace(packList, h("p", { class: "muted" }, sweep.execution.pack === "off" ? "Packing is off: each trial trains alone." : "No pack yet: trials that trained alone are not listed."));
      return label;
    }
    replace(packList, h("table", { "data-testid": "pack-table" },
      h("thead", {}, h("tr", {}, ["Pack", "Started", "Trials"].map((c) => h("th", {}, c)))),
      h("tbody", {}, packs.map((p) => h("tr", {},
        h("td", { title: p.id }, label.get(p.id)),
        h("td", {}, fmtTime(p.started_at)),
        h("td", {}, p.trial_numbers.map((n, i) => [i ? ", " : "", h("a", { href: `/ui/jobs/${p.trial_ids[i]}` }, `#${n}`)])))))));
    return label;
  }

  function renderBoard(trials, packLabel) {
    replace(board, h("table", { "data-testid": "leaderboard" },
      h("thead", {}, h("tr", {}, ["Rank", "Trial", "Status", sweep.objective.metric, "Epochs", "Pack", ...names].map((c) => h("th", {}, c)))),
      h("tbody", {}, trials.map((t) => h("tr", {},
        h("td", {}, t.rank ?? "–"),
        h("td", {}, h("a", { href: `/ui/jobs/${t.job_id}` }, `#${t.trial_number}`)),
        h("td", {}, statusBadge(t.status), t.status_reason ? h("span", { class: "muted small" }, ` ${t.status_reason}`) : null),
        h("td", {}, fmtNumber(t.objective)),
        h("td", {}, String(t.epochs)),
        h("td", { title: t.pack_id ?? "trained alone" }, t.pack_id ? packLabel.get(t.pack_id) ?? "–" : "–"),
        names.map((n) => h("td", {}, paramText(t.params[n]))))))));
  }

  function renderScatter(trials) {
    for (const name of names) {
      const values = trials.map((t) => t.params[name]);
      const numericParam = values.every((v) => typeof v === "number");
      const labels = numericParam ? null : [...new Set(values.map((v) => JSON.stringify(v)))];
      if (!charts.has(name)) {
        charts.set(name, new SeriesChart(scatter, {
          id: `param-${name}`, title: name, names: [sweep.objective.metric], xLabel: name, height: 200, scatter: true, showLatest: false,
          logX: !labels && String(sweep.parameters[name]?.kind ?? "").includes("log"), // sampled log-uniformly
          xTicks: labels ? (v) => (Number.isInteger(v) ? labels[v] ?? "" : "") : null,
        }));
      }
      const points = new Map();
      for (const t of trials) {
        if (numeric(t.objective) === null) continue;
        const x = labels ? labels.indexOf(JSON.stringify(t.params[name])) : t.params[name];
        // Several trials may share a value: nudge the key, keep the x.
        let key = x;
        while (points.has(key)) key += 1e-9;
        points.set(key, { value: t.objective });
      }
      charts.get(name).update(new Map([[sweep.objective.metric, points]]), (x) => x, false);
    }
  }

  async function renderCurves(trials) {
    const chosen = trials.filter((t) => t.epochs > 0).slice(0, MAX_CURVES);
    const labels = chosen.map((t) => `#${t.trial_number}`);
    const key = labels.join(",");
    if (key !== curveKey) {
      curveChart?.destroy();
      replace(curves);
      curveChart = labels.length ? new SeriesChart(curves, { id: "trials", title: sweep.objective.metric, names: labels, xLabel: "epoch" }) : null;
      curveKey = key;
    }
    if (!curveChart) return;
    const series = new Map();
    await Promise.all(chosen.map(async (t, i) => {
      const body = await getJSON(`/v1/jobs/${t.job_id}/metrics?name=${encodeURIComponent(sweep.objective.metric)}&max_points=2000`, { signal });
      const points = new Map();
      for (const p of body.series[0]?.points ?? []) points.set(p.epoch + 1, { epoch: p.epoch, value: p.value });
      series.set(labels[i], points);
    }));
    if (!signal.aborted) curveChart.update(series);
  }

  let ended = false;
  poll(async () => {
    if (ended) return;
    sweep = await getJSON(base, { signal });
    const { items } = await getJSON(`${base}/trials`, { signal });
    renderHeader();
    renderBoard(items, renderPacks());
    renderScatter(items);
    await renderCurves(items);
    replace(message);
    ended = sweep.status !== "running";
  }, 3000, signal, (err) => replace(message, errorBox(err)));
}
