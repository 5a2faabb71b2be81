import { hasRoute } from "../api.js";
import { h, replace } from "../dom.js";

const ROUTE = "/v1/jobs/{job_id}/logs";

function lineText(line) {
  const at = new Date(line.at).toLocaleTimeString();
  return `${at}  #${line.attempt} ${line.source} ${line.level.padEnd(7)} ${line.message}`;
}

// The job's log lines (GET /v1/jobs/{id}/logs holds them; the SSE stream's `log` events
// bring them, history first, then live). Shown when the API has logs.
export class LogPanel {
  constructor(root, signal) {
    this.root = root;
    this.lines = new Map(); // id -> line
    this.pre = h("pre", { class: "logs", "data-testid": "logs" });
    hasRoute(ROUTE).then((has) => has && !signal.aborted && this.show());
  }

  show() {
    if (this.shown) return;
    this.shown = true;
    replace(this.root, h("section", {}, h("h2", {}, "Logs"), this.pre));
    this.render();
  }

  add(lines) {
    for (const line of lines) this.lines.set(line.id, line);
    this.show();
    this.render();
  }

  render() {
    const pre = this.pre;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const ordered = [...this.lines.values()].sort((a, b) => a.id - b.id);
    pre.textContent = ordered.length ? ordered.map(lineText).join("\n") : "No log lines yet.";
    for (const line of ordered) if (line.level === "error") pre.classList.add("has-error");
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
}
