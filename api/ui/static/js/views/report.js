import { ApiError, getJSON } from "../api.js";
import { errorBox, fmtNumber, h, replace } from "../dom.js";

// The job's validation report (GET /v1/jobs/{id}/report, issue 24): per-class scores and
// the confusion matrix as a heatmap, each cell shaded by its share of the true class's row.

// Only a succeeded classification with a validation split gets a report; builtin
// regressions are known here, so their page asks for none (an upload's task is not).
function mayHaveReport(job) {
  if (job.status !== "succeeded") return false;
  const dataset = job.spec?.dataset || {};
  if (dataset.validation_split === 0) return false;
  const source = dataset.source || {};
  if (source.kind === "builtin" && source.name === "diabetes") return false;
  if (source.kind === "builtin" && source.name === "synthetic" && source.synthetic?.n_classes === 0) return false;
  return true;
}

function heatmap(report) {
  const { classes, confusion_matrix: matrix } = report;
  const head = h("tr", {}, h("th", { class: "small" }, "true \\ predicted"),
    classes.map((c) => h("th", { class: "small", title: c }, c)));
  const rows = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return h("tr", {}, h("th", { class: "small", title: classes[i] }, classes[i]),
      row.map((n, j) => {
        const share = total ? n / total : 0;
        const cell = h("td", {
          class: i === j ? "cm-cell cm-diagonal" : "cm-cell",
          title: `true ${classes[i]}, predicted ${classes[j]}: ${n} (${(100 * share).toFixed(1)}% of the row)`,
          "data-count": String(n),
        }, String(n));
        cell.style.backgroundColor = `rgba(37, 99, 235, ${(0.85 * share).toFixed(3)})`;
        if (share > 0.5) cell.style.color = "#fff";
        return cell;
      }));
  });
  return h("table", { class: "confusion-matrix", "data-testid": "confusion-matrix" }, h("thead", {}, head), h("tbody", {}, rows));
}

function perClass(report) {
  return h("table", { "data-testid": "per-class" },
    h("thead", {}, h("tr", {}, ["Class", "Precision", "Recall", "F1", "Support"].map((c) => h("th", {}, c)))),
    h("tbody", {}, report.per_class.map((c) => h("tr", {},
      h("td", {}, c.class), h("td", {}, fmtNumber(c.precision)), h("td", {}, fmtNumber(c.recall)),
      h("td", {}, fmtNumber(c.f1)), h("td", {}, String(c.support))))));
}

export class ReportPanel {
  constructor(container, base, signal) {
    this.container = container;
    this.base = base;
    this.signal = signal;
    this.loaded = false;
  }

  // Called whenever the job changes; fetches the report once the job may have one.
  async update(job) {
    if (this.loaded || !mayHaveReport(job)) return;
    this.loaded = true;
    try {
      const report = await getJSON(`${this.base}/report`, { signal: this.signal });
      const ckpt = report.checkpoint;
      replace(this.container, h("section", { "data-testid": "report" },
        h("h2", {}, "Validation report"),
        h("p", { class: "muted" },
          `${ckpt.is_best ? "Best" : "Latest"} checkpoint (epoch ${ckpt.epoch + 1}, step ${ckpt.step}) · `,
          `${report.n_samples} validation samples · accuracy ${fmtNumber(report.accuracy)}`),
        h("div", { class: "two-col" }, h("div", {}, heatmap(report)), h("div", {}, perClass(report)))));
    } catch (err) {
      if (this.signal.aborted) return;
      if (err instanceof ApiError && err.status === 409) return; // no report for this job
      replace(this.container, errorBox(err));
    }
  }
}
