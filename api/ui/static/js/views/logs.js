import { getJSON, hasRoute, poll } from "../api.js";
import { errorBox, h, replace } from "../dom.js";

const ROUTE = "/v1/jobs/{job_id}/logs";

function lineText(line) {
  if (typeof line === "string") return line;
  const text = line.message ?? line.text ?? line.line ?? JSON.stringify(line);
  const at = line.at ?? line.ts ?? line.time ?? line.created_at;
  const level = line.level ?? line.stream ?? "";
  return [at ? new Date(at).toLocaleTimeString() : "", level, text].filter(Boolean).join("  ");
}

// The job's log lines, when the API has GET /v1/jobs/{id}/logs; refreshed while it runs.
export async function logPanel(root, { jobId, signal, live }) {
  if (!(await hasRoute(ROUTE)) || signal.aborted) return;
  const pre = h("pre", { class: "logs", "data-testid": "logs" });
  const message = h("div");
  replace(root, h("section", {}, h("h2", {}, "Logs"), message, pre));
  let done = false;
  poll(async () => {
    if (done) return;
    const body = await getJSON(`/v1/jobs/${encodeURIComponent(jobId)}/logs`, { signal });
    const lines = Array.isArray(body) ? body : body.items ?? body.lines ?? [];
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = lines.map(lineText).join("\n");
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    if (!live()) done = true;
  }, 2000, signal, (err) => replace(message, errorBox(err)));
}
