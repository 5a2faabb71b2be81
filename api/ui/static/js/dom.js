// Small DOM helpers: text goes in as text (textContent), never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== "string") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtNumber(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "string") return value; // NaN, Infinity, -Infinity
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(2);
  return value.toPrecision(digits).replace(/\.?0+$/, "");
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function secondsBetween(from, to) {
  if (!from) return null;
  const end = to ? Date.parse(to) : Date.now();
  return (end - Date.parse(from)) / 1000;
}

export function fmtAge(iso) {
  const s = secondsBetween(iso, null);
  return s === null ? "–" : `${fmtDuration(s)} ago`;
}

export function fmtTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, "data-testid": "status" }, status);
}

export function errorBox(err) {
  const box = h("div", { class: "error", role: "alert" }, err.message);
  if (err.errors?.length) {
    box.append(
      h(
        "ul",
        { class: "problems" },
        err.errors.map((e) => h("li", {}, h("code", { class: "loc" }, e.loc), " ", e.msg)),
      ),
    );
  }
  return box;
}

// The job's best monitored metric, in whichever shape the API gives it.
export function bestMetricText(job) {
  const best = job.best_metric ?? job.best ?? null;
  if (best === null || best === undefined) return "–";
  if (typeof best === "number" || typeof best === "string") {
    const name = job.monitor || job.best_metric_name || "";
    return `${name} ${fmtNumber(best)}`.trim();
  }
  const name = best.name ?? best.monitor ?? best.metric ?? "";
  const value = best.value ?? best.best ?? null;
  const epoch = best.epoch !== undefined && best.epoch !== null ? ` (epoch ${best.epoch + 1})` : "";
  return `${name} ${fmtNumber(value)}${epoch}`.trim();
}
