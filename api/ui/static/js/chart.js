// Line charts on uPlot (pinned in api/ui/package-lock.json, served from node_modules).
// New points keep the user's zoom: drag to zoom, double-click to see everything again.

import uPlot from "/ui/vendor/uplot/uPlot.esm.js";
import { fmtNumber, h } from "./dom.js";

// 16 distinguishable colours (trial curves of a sweep run past 8).
export const COLORS = [
  "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
  "#4b5563", "#65a30d", "#7c3aed", "#0d9488", "#b45309", "#be123c", "#1e3a8a", "#a21caf",
];
const COUNT_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

// Tick labels with as many significant digits as the spacing of the ticks needs, so that
// neighbouring ticks never read the same (0.00090, 0.00092 ... not 0.001 0.001 ...).
export function tickLabels(splits) {
  const finite = splits.filter((v) => Number.isFinite(v));
  const gaps = finite.slice(1).map((v, i) => Math.abs(v - finite[i])).filter((d) => d > 0);
  const text = (format) => splits.map((v) => (Number.isFinite(v) ? format(v) : "")); // log axes skip some
  if (!gaps.length) return text((v) => fmtNumber(v));
  const step = Math.min(...gaps);
  const mag = Math.max(...finite.map(Math.abs));
  const low = Math.min(...finite.map(Math.abs));
  if (low > 0 && mag / low >= 100) return text((v) => fmtNumber(v, 3)); // decades: a log axis
  if (mag !== 0 && (mag < 1e-3 || mag >= 1e6)) {
    const digits = Math.min(Math.max(Math.ceil(Math.log10(mag / step)), 0), 12);
    return text((v) => (v === 0 ? "0" : v.toExponential(digits)));
  }
  const decimals = Math.min(Math.max(Math.ceil(-Math.log10(step) - 1e-9), 0), 12);
  return text((v) => v.toFixed(decimals));
}

export function numeric(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

// One chart of several series. `update` takes Map(name -> Map(x -> {epoch, value})).
// `log`: the y axis starts logarithmic (a button toggles it); `logX`: a logarithmic x axis
// (a parameter sampled log-uniformly); an x axis of epochs has whole-number ticks only.
export class SeriesChart {
  constructor(container, { id, title, names, xLabel = "step", height = 220, log = false, logX = false, scatter = false, xTicks = null, showLatest = true }) {
    this.names = names;
    this.log = log;
    this.config = { xLabel, height, logX, scatter, xTicks };
    this.latest = h("div", { class: "latest", hidden: !showLatest });
    this.plot = h("div", { class: "plot" });
    this.toggle = h("button", { type: "button", class: "link small", "data-testid": "log-toggle",
      title: "Switch the y axis between linear and logarithmic" });
    this.toggle.addEventListener("click", () => this.setLog(!this.log));
    this.figure = h(
      "figure",
      { class: "chart", "data-chart": id },
      h("figcaption", {}, title, " ", this.toggle),
      this.plot,
      this.latest,
    );
    container.append(this.figure);
    this.raw = [[], ...names.map(() => [])];
    this.build(Math.max(container.clientWidth || 0, 280));
    this.resizer = new ResizeObserver(() => {
      const width = Math.max(this.figure.clientWidth - 16, 200);
      if (Math.abs(width - this.u.width) > 2) this.u.setSize({ width, height });
    });
    this.resizer.observe(this.figure);
    this.update(new Map());
  }

  // Log scales show positive values only: the others are left out, not bent.
  shown(data) {
    if (!this.log && !this.config.logX) return data;
    const keep = (i) => !this.config.logX || data[0][i] > 0;
    const xs = data[0].filter((_, i) => keep(i));
    const ys = data.slice(1).map((col) => col.filter((_, i) => keep(i))
      .map((v) => (this.log && v !== null && v <= 0 ? null : v)));
    return [xs, ...ys];
  }

  setLog(log) {
    this.log = log;
    const width = this.u.width;
    this.u.destroy();
    this.build(width);
  }

  build(width) {
    const { xLabel, height, logX, scatter, xTicks } = this.config;
    const names = this.names;
    this.figure.dataset.yScale = this.log ? "log" : "linear";
    this.figure.dataset.xScale = logX ? "log" : "linear";
    this.toggle.textContent = this.log ? "y: log" : "y: linear"; // the scale shown; a click switches
    const xAxis = { label: xLabel };
    if (xTicks) xAxis.values = (u, splits) => splits.map(xTicks);
    else if (xLabel === "epoch" || xLabel === "step") { // counts: whole-number ticks only
      xAxis.incrs = COUNT_INCRS;
      xAxis.values = (u, splits) => splits.map((v) => (Number.isInteger(v) ? String(v) : ""));
    } else xAxis.values = (u, splits) => tickLabels(splits);
    const opts = {
      width,
      height,
      scales: { x: logX ? { time: false, distr: 3 } : { time: false }, y: this.log ? { distr: 3 } : {} },
      cursor: { drag: { x: true, y: false } },
      legend: { show: false }, // the latest values are written below each chart
      hooks: {
        // The x range shown, for anyone reading the page (and the UI tests).
        setScale: [(u, key) => key === "x" && (this.figure.dataset.xRange = `${u.scales.x.min},${u.scales.x.max}`)],
      },
      axes: [xAxis, { size: 70, values: (u, splits) => tickLabels(splits) }],
      series: [
        { label: xLabel },
        ...names.map((name, i) => ({
          label: name,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          spanGaps: !scatter,
          points: { show: true, size: scatter ? 7 : 4 },
          ...(scatter ? { paths: () => null } : {}),
        })),
      ],
    };
    this.u = new uPlot(opts, this.shown(this.raw), this.plot);
  }

  zoomed() {
    const xs = this.u.data[0];
    const { min, max } = this.u.scales.x;
    if (!xs.length || min === null || min === undefined) return false;
    return min > xs[0] || max < xs[xs.length - 1];
  }

  update(seriesMap, xOf = (x) => x, epochLabel = true) {
    const xsSet = new Set();
    for (const name of this.names) for (const x of seriesMap.get(name)?.keys() ?? []) xsSet.add(x);
    const xs = [...xsSet].sort((a, b) => a - b);
    const data = [
      xs.map(xOf),
      ...this.names.map((name) => {
        const points = seriesMap.get(name);
        return xs.map((x) => numeric(points?.get(x)?.value));
      }),
    ];
    this.raw = data;
    this.u.setData(this.shown(data), !this.zoomed());
    this.latest.replaceChildren(
      ...this.names.map((name, i) => {
        const points = seriesMap.get(name);
        const count = points?.size ?? 0;
        let text = `${name} –`;
        if (count) {
          const lastX = Math.max(...points.keys());
          const last = points.get(lastX);
          text = `${name} ${fmtNumber(last.value)}`;
          if (epochLabel && last.epoch !== undefined) text += ` · epoch ${last.epoch + 1}`;
        }
        return h(
          "span",
          { class: "series", "data-series": name, "data-points": String(count) },
          h("i", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }),
          text,
        );
      }),
    );
  }

  destroy() {
    this.resizer.disconnect();
    this.u.destroy();
  }
}
