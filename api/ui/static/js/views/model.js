import { download, sendJSON } from "../api.js";
import { errorBox, fmtNumber, h, replace } from "../dom.js";

// A finished job's exported model: download the bundle (model.onnx + model.json) and try
// a prediction (POST /v1/jobs/{id}/predict) from instances written as JSON.
export function modelPanel(container, job, base, signal) {
  const message = h("div", { "data-testid": "predict-result" });
  const get = h("button", { type: "button", "data-testid": "download-model" }, "Download model (ONNX)");
  get.addEventListener("click", () => download(`${base}/model`, `${job.id}-model.zip`)
    .catch((err) => replace(message, errorBox(err))));
  const input = h("textarea", {
    id: "predict-input", rows: 4, spellcheck: "false", "data-testid": "predict-input",
    placeholder: '[{"feature": 1.0, ...}]  a feature mapping per row, a string per text, or base64 image bytes',
  });
  const go = h("button", { type: "submit" }, "Predict");
  const form = h("form", { class: "predict" },
    h("label", { for: "predict-input" }, "Instances (a JSON list)"), input, go, message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let instances;
    try {
      instances = JSON.parse(input.value);
      if (!Array.isArray(instances)) instances = [instances];
    } catch (err) {
      replace(message, h("div", { class: "error", role: "alert" }, `Not JSON: ${err.message}`));
      return;
    }
    try {
      const body = await sendJSON("POST", `${base}/predict`, { instances }, { signal });
      replace(message, h("table", { "data-testid": "predictions" },
        h("thead", {}, h("tr", {}, ["#", "Prediction", "Probability"].map((c) => h("th", {}, c)))),
        h("tbody", {}, body.predictions.map((p, i) => h("tr", {},
          h("td", {}, String(i)),
          h("td", {}, "label" in p ? String(p.label) : fmtNumber(p.value)),
          h("td", {}, p.probabilities ? fmtNumber(Math.max(...Object.values(p.probabilities))) : "–"))))));
    } catch (err) {
      if (!signal.aborted) replace(message, errorBox(err)); // 422: every instance's problem
    }
  });
  replace(container, h("h2", {}, "Model"), h("p", {}, get), form);
}
