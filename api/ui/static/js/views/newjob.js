import { ApiError, getJSON, Offline, sendJSON } from "../api.js";
import { SeriesChart } from "../chart.js";
import { errorBox, fmtNumber, h, replace } from "../dom.js";
import { layerTable } from "../layers.js";
import { parseSpecText, SpecEditor } from "../spec-editor.js";

const EXAMPLE = `# A job spec in YAML (or JSON); every field not given has a default (docs/spec.md).
dataset:
  source: {kind: builtin, name: digits}
  batch_size: 32
  validation_split: 0.2
model:
  kind: mlp
  hidden_units: [128]
  activation: relu
optimizer:
  kind: adam
  lr: 0.001
schedule:
  kind: cosine
epochs: 10
seed: 0
`;
const DRAFT = "trainforge.draftSpec";

const LABEL = "Job spec (YAML or JSON)";

// YAML/JSON editor (CodeMirror: highlighting, completion and hover help from the spec's
// JSON Schema, problems marked at their line): validated as you type (debounced POST
// /v1/specs/validate), the plan while the spec is valid, submit.
export function newJobView(root, { signal, navigate }) {
  const editorBox = h("div", { class: "spec-editor", id: "spec-editor" });
  const name = h("input", { id: "job-name", placeholder: "optional" });
  const priority = h("input", { id: "job-priority", type: "number", min: 0, max: 9, value: "0" });
  const submit = h("button", { type: "submit" }, "Submit job");
  const problems = h("div", { class: "problems-box", "data-testid": "problems", "aria-live": "polite" });
  const plan = h("div", { class: "plan", "data-testid": "plan" });
  const lrChart = h("div", { class: "charts one small" });
  const layers = h("div", { class: "layer-table" });
  const submitMessage = h("div", { "data-testid": "submit-message" });
  const form = h("form", { class: "editor" },
    h("div", { class: "editor-main" },
      h("span", { class: "label" }, LABEL),
      editorBox,
      h("div", { class: "row" }, h("label", { for: "job-name" }, "Name"), name,
        h("label", { for: "job-priority" }, "Priority"), priority, submit),
      submitMessage),
    h("aside", {}, h("h2", {}, "Validation"), problems, h("h2", {}, "Plan"), plan, lrChart,
      h("h2", {}, "Layers"), layers));
  replace(root, h("h1", {}, "New job"), form);
  let seq = 0;
  let timer = null;
  const editor = new SpecEditor(editorBox, {
    text: sessionStorage.getItem(DRAFT) || EXAMPLE,
    label: LABEL,
    schema: getJSON("/v1/schemas/job-spec", { signal }).then((r) => r.json_schema),
    onChange: () => {
      clearTimeout(timer);
      timer = setTimeout(validate, 400);
    },
  });
  signal.addEventListener("abort", () => editor.destroy());

  let chart = null;
  signal.addEventListener("abort", () => chart?.destroy());

  function parseSpec() {
    return parseSpecText(editor.text);
  }

  function showProblems(err) {
    if (err instanceof ApiError && err.status === 422 && err.errors.length) {
      editor.mark(err.errors);
      replace(problems,
        h("p", { class: "bad" }, `${err.errors.length} problem${err.errors.length > 1 ? "s" : ""}:`),
        h("ul", { class: "problems" }, err.errors.map((e) =>
          h("li", { "data-loc": e.loc }, h("code", { class: "loc" }, e.loc), " ", e.msg))));
    } else {
      replace(problems, errorBox(err));
    }
  }

  function showPlan(result) {
    const p = result.plan;
    replace(plan, h("dl", {},
      h("dt", {}, "Parameters"), h("dd", { "data-testid": "parameter-count" }, fmtNumber(p.parameter_count)),
      h("dt", {}, "Train / validation samples"), h("dd", {}, `${fmtNumber(p.train_samples)} / ${fmtNumber(p.validation_samples)}`),
      h("dt", {}, "Steps per epoch"), h("dd", { "data-testid": "steps-per-epoch" }, fmtNumber(p.steps_per_epoch)),
      h("dt", {}, "Total steps"), h("dd", {}, fmtNumber(p.total_steps))));
    replace(layers, layerTable(p.layers));
    if (p.lr_per_epoch) {
      chart ??= new SeriesChart(lrChart, { id: "plan-lr", title: "LR per epoch", names: ["lr"], xLabel: "epoch", height: 160 });
      chart.update(new Map([["lr", new Map(p.lr_per_epoch.map((v, i) => [i + 1, { epoch: i, value: v }]))]]));
    } else {
      chart?.destroy();
      chart = null;
      replace(lrChart, h("p", { class: "muted" }, "The LR depends on the metrics (reduce_on_plateau)."));
    }
  }

  // The plan of the last valid spec is not this spec's: it goes while the spec is invalid.
  function clearPlan() {
    chart?.destroy();
    chart = null;
    replace(lrChart);
    replace(layers);
    replace(plan, h("p", { class: "muted", "data-testid": "plan-empty" }, "No plan while the spec is invalid."));
  }

  async function validate() {
    sessionStorage.setItem(DRAFT, editor.text);
    const mine = ++seq;
    const { spec, error, offset } = parseSpec();
    if (error) {
      replace(problems, h("p", { class: "bad" }, h("code", { class: "loc" }, "YAML"), " ", error));
      editor.mark([{ msg: error, offset }]);
      clearPlan();
      return;
    }
    replace(problems, h("p", { class: "muted" }, "Checking…"));
    try {
      const result = await sendJSON("POST", "/v1/specs/validate", { spec }, { signal });
      if (mine !== seq) return;
      replace(problems, h("p", { class: "ok", "data-testid": "valid" }, "✓ Valid spec"));
      editor.mark([]);
      showPlan(result);
    } catch (err) {
      if (mine !== seq || signal.aborted) return;
      if (err instanceof Offline) replace(problems, h("p", { class: "muted" }, "Waiting for the server…"));
      else {
        showProblems(err);
        clearPlan();
      }
    }
  }

  signal.addEventListener("abort", () => clearTimeout(timer));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(timer);
    const { spec, error } = parseSpec();
    if (error) {
      replace(submitMessage, h("div", { class: "error" }, `YAML: ${error}`));
      return;
    }
    submit.disabled = true;
    replace(submitMessage);
    try {
      const body = { spec, priority: Number(priority.value || 0) };
      if (name.value.trim()) body.name = name.value.trim();
      const job = await sendJSON("POST", "/v1/jobs", body, { signal });
      sessionStorage.removeItem(DRAFT);
      navigate(`/ui/jobs/${encodeURIComponent(job.id)}`);
    } catch (err) {
      if (signal.aborted) return;
      submit.disabled = false;
      replace(submitMessage, errorBox(err));
      if (err instanceof ApiError && err.status === 422) showProblems(err);
    }
  });
  validate();
}
