import { fmtNumber, h } from "./dom.js";

// The model's layers as POST /v1/specs/validate answers them (plan.layers): index, id, op,
// output shape (without the batch) and parameters; the implied head is the last row.
export function layerTable(layers) {
  if (!layers || !layers.length) return h("p", { class: "muted" }, "No layers.");
  return h("table", { class: "layers", "data-testid": "layers" },
    h("thead", {}, h("tr", {}, ["#", "id", "op", "output shape", "parameters"].map((t) => h("th", {}, t)))),
    h("tbody", {}, layers.map((l) =>
      h("tr", { "data-op": l.op },
        h("td", {}, String(l.index)),
        h("td", {}, l.id ?? ""),
        h("td", {}, h("code", {}, l.op)),
        h("td", { class: "shape" }, l.output_shape.join("×")),
        h("td", { class: "num" }, fmtNumber(l.parameter_count))))));
}
