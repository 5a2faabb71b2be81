import { ApiError, Offline, apiKey, getJSON } from "../api.js";
import { h, replace } from "../dom.js";

// A field labelled "API key"; the key stays in this tab's sessionStorage.
export function signInView(root, { signal, message, onSignedIn }) {
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    required: true,
    spellcheck: "false",
  });
  const note = h("div", { class: "signin-message", role: "alert" }, message || "");
  note.hidden = !message;
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "signin card" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" },
      "Paste your Trainforge API key (`trainforge up` prints one and writes it to .trainforge/api-key). ",
      "It is kept in this browser tab only."),
    h("label", { for: "api-key" }, "API key"),
    input,
    button,
    note,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    apiKey.set(key);
    try {
      await getJSON("/v1/jobs?limit=1", { signal });
      onSignedIn();
    } catch (err) {
      if (signal.aborted && !(err instanceof ApiError)) return;
      apiKey.clear();
      // A 401 re-renders this view with its message (see main.js); anything else shows here.
      if (err instanceof Offline) replace(note, "The server cannot be reached; try again.");
      else if (!(err instanceof ApiError && err.status === 401)) replace(note, err.message);
      note.hidden = false;
      button.disabled = false;
    }
  });
  replace(root, form);
  input.focus();
}
