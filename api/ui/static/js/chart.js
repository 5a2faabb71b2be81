// Line charts on uPlot (pinned in api/ui/package-lock.json, served from node_modules).
// New points keep the user's zoom: drag to zoom, double-click to see everything again.

import uPlot from "/ui/vendor/uplot/uPlot.esm.js";
import { fmtNumber, h } from "./dom.js";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

export function numeric(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

// One chart of several series. `update` takes Map(name -> Map(x -> {epoch, value})).
export class SeriesChart {
  constructor(container, { id, title, names, xLabel = "step", height = 220, log = false, scatter = false, xTicks = null, showLatest = true }) {
    this.names = names;
    this.latest = h("div", { class: "latest", hidden: !showLatest });
    this.plot = h("div", { class: "plot" });
    this.figure = h(
      "figure",
      { class: "chart", "data-chart": id },
      h("figcaption", {}, title),
      this.plot,
      this.latest,
    );
    container.append(this.figure);
    const opts = {
      width: Math.max(container.clientWidth || 0, 280),
      height,
      scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
      cursor: { drag: { x: true, y: false } },
      legend: { show: false }, // the latest values are written below each chart
      hooks: {
        // The x range shown, for anyone reading the page (and the UI tests).
        setScale: [(u, key) => key === "x" && (this.figure.dataset.xRange = `${u.scales.x.min},${u.scales.x.max}`)],
      },
      axes: [xTicks ? { label: xLabel, values: (u, splits) => splits.map(xTicks) } : { label: xLabel }, { size: 60 }],
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
    this.u = new uPlot(opts, [[], ...names.map(() => [])], this.plot);
    this.resizer = new ResizeObserver(() => {
      const width = Math.max(this.figure.clientWidth - 16, 200);
      if (Math.abs(width - this.u.width) > 2) this.u.setSize({ width, height });
    });
    this.resizer.observe(this.figure);
    this.update(new Map());
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
    this.u.setData(data, !this.zoomed());
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
