import { ApiError, getJSON, request } from "../api.js";
import { errorBox, fmtAge, fmtBytes, h, replace } from "../dom.js";

// The multipart fields of POST /v1/datasets, sent only when filled in (an option that
// does not apply to the format is refused by the API, which says which).
const FIELDS = [
  ["name", "Name", "text", "default: the file's name"],
  ["label_column", "Label column", "text", "csv, text_csv (default label)"],
  ["text_column", "Text column", "text", "text_csv (default text)"],
  ["feature_columns", "Feature columns", "text", "csv: a,b,c (default: all but the label)"],
  ["delimiter", "Delimiter", "text", ", ; | or tab (default: sniffed)"],
  ["columns", "Column types", "text", "csv: island=categorical,id=ignore (default: inferred)"],
  ["image_size", "Image size", "text", "image_zip: H,W"],
];
const CHOICES = [
  ["task", "Task", ["", "auto", "classification", "regression"]],
  ["impute", "Impute", ["", "none", "mean", "median", "constant"]],
  ["color_mode", "Color mode", ["", "rgb", "greyscale"]],
  ["layout", "Layout", ["", "auto", "channels_last", "channels_first"]],
];

// A csv upload's typed columns (issue 29): name, type, missing and distinct cells, and why a
// column is left out.
function columnsTable(d) {
  if (!d.columns?.length) return null;
  return h("table", { "data-testid": "dataset-columns", class: "columns" },
    h("thead", {}, h("tr", {}, ["Column", "Type", "Missing", "Distinct", "Note"].map((c) => h("th", {}, c)))),
    h("tbody", {}, d.columns.map((c) => h("tr", {},
      h("td", {}, c.name), h("td", {}, c.type), h("td", {}, String(c.missing)),
      h("td", {}, String(c.distinct)), h("td", { class: "muted" }, c.note || "")))));
}

export function datasetsView(root, { signal }) {
  const body = h("tbody");
  const message = h("div", { "data-testid": "datasets-message" });
  const more = h("div", { class: "pager" });
  const file = h("input", { type: "file", id: "ds-file", name: "file", required: true });
  const format = h("select", { id: "ds-format", name: "format" },
    ["", "csv", "text_csv", "npz", "image_zip"].map((f) => h("option", { value: f }, f || "(inferred)")));
  const inputs = FIELDS.map(([key, label, type, hint]) => [key, label, h("input", { id: `ds-${key}`, name: key, type, placeholder: hint })]);
  const selects = CHOICES.map(([key, label, options]) => [key, label,
    h("select", { id: `ds-${key}`, name: key }, options.map((o) => h("option", { value: o }, o || "(default)")))]);
  const upload = h("button", { type: "submit" }, "Upload");
  const uploadMessage = h("div", { "data-testid": "upload-message" });
  const form = h("form", { class: "upload card" },
    h("h2", {}, "Upload a dataset"),
    h("div", { class: "grid" },
      h("label", { for: "ds-file" }, "File"), file,
      h("label", { for: "ds-format" }, "Format"), format,
      [...inputs, ...selects].map(([key, label, el]) => [h("label", { for: `ds-${key}` }, label), el])),
    upload, uploadMessage);
  replace(root, h("h1", {}, "Datasets"), message,
    h("table", { "data-testid": "datasets" },
      h("thead", {}, h("tr", {}, ["Name", "Id", "Format", "Task", "Samples", "Classes", "Size", "Uploaded", ""].map((c) => h("th", {}, c)))),
      body),
    more, form);

  function row(d) {
    const del = h("button", { type: "button", class: "danger" }, "Delete");
    let armed = false;
    del.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        del.textContent = "Confirm delete";
        return;
      }
      try {
        await request(`/v1/datasets/${encodeURIComponent(d.id)}`, { method: "DELETE", signal });
        replace(message, h("p", { class: "ok" }, `Deleted ${d.name}.`));
        load();
      } catch (err) {
        if (!signal.aborted) replace(message, errorBox(err)); // e.g. 409: a job uses it
      }
    });
    const name = d.columns?.length
      ? h("details", {}, h("summary", {}, d.name), columnsTable(d))
      : d.name;
    return h("tr", {},
      h("td", {}, name), h("td", {}, h("code", {}, d.id)), h("td", {}, d.format),
      h("td", {}, `${d.task} (${d.modality})`), h("td", {}, String(d.n_samples)),
      h("td", {}, d.n_classes ? String(d.n_classes) : "–"), h("td", {}, fmtBytes(d.size_bytes)),
      h("td", {}, fmtAge(d.created_at)), h("td", {}, del));
  }

  let items = [];
  async function load(cursor = null) {
    try {
      const page = await getJSON(`/v1/datasets?limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, { signal });
      items = cursor ? [...items, ...page.items] : page.items;
      replace(body, items.length ? items.map(row) : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No datasets yet.")));
      const next = h("button", { type: "button" }, "More");
      next.addEventListener("click", () => load(page.next_cursor));
      replace(more, page.next_cursor ? next : null);
    } catch (err) {
      if (!signal.aborted && !(err instanceof ApiError && err.status === 401)) replace(message, errorBox(err));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    const data = new FormData();
    data.append("file", file.files[0]);
    if (format.value) data.append("format", format.value);
    for (const [key, , el] of [...inputs, ...selects]) if (el.value.trim()) data.append(key, el.value.trim());
    upload.disabled = true;
    replace(uploadMessage, h("p", { class: "muted" }, "Uploading and checking…"));
    try {
      const res = await request("/v1/datasets", { method: "POST", body: data, signal });
      const d = await res.json();
      replace(uploadMessage, h("p", { class: "ok" },
        `${res.status === 200 ? "Already uploaded" : "Stored"}: ${d.name} — id ${d.id}, ${d.n_samples} samples, ${d.task}.`),
      columnsTable(d), d.notes?.length ? h("ul", {}, d.notes.map((n) => h("li", {}, n))) : null);
      form.reset();
      load();
    } catch (err) {
      if (!signal.aborted) replace(uploadMessage, errorBox(err));
    } finally {
      upload.disabled = false;
    }
  });
  load();
}
