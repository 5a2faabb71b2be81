import { hasRoute } from "../api.js";
import { h, replace } from "../dom.js";

// Sweeps: shown when the API has them (see the report of issue 12).
export async function sweepView(root, { params }) {
  const available = await hasRoute("/v1/sweeps/{sweep_id}");
  replace(root, h("section", { class: "notfound", "data-testid": "not-found" },
    h("h1", {}, available ? "Sweep" : "Sweeps not available"),
    h("p", {}, available ? `Sweep ${params[0]}: this dashboard does not show sweeps yet.` : "This server has no sweeps API.")));
}
