// The dashboard's entry: sign-in gate, client-side routes, the "reconnecting…" banner.

import { apiKey, connection, onUnauthorized } from "./api.js";
import { h, replace } from "./dom.js";
import { compareView } from "./views/compare.js";
import { datasetsView } from "./views/datasets.js";
import { jobView } from "./views/job.js";
import { jobsView } from "./views/jobs.js";
import { signInView } from "./views/signin.js";
import { sweepView } from "./views/sweep.js";
import { sweepsView } from "./views/sweeps.js";

const app = document.getElementById("app");
const nav = document.getElementById("nav");
const banner = document.getElementById("banner");
let current = null; // the open view's AbortController

const ROUTES = [
  [/^\/ui\/?$/, () => jobsView],
  [/^\/ui\/jobs\/([^/]+)$/, () => jobView],
  [/^\/ui\/compare$/, () => compareView],
  // the editor's CodeMirror bundle is loaded by the page that uses it, not by every page
  [/^\/ui\/new$/, () => lazy(() => import("./views/newjob.js"), "newJobView")],
  [/^\/ui\/datasets$/, () => datasetsView],
  [/^\/ui\/sweeps\/?$/, () => sweepsView],
  [/^\/ui\/sweeps\/([^/]+)$/, () => sweepView],
];

function lazy(load, name) {
  return (root, context) => load().then((module) => {
    if (!context.signal.aborted) module[name](root, context);
  });
}

function notFoundView(root) {
  replace(root, h("section", { class: "notfound" }, h("h1", {}, "Page not found"),
    h("p", {}, "Nothing lives at this address. "), h("a", { href: "/ui/" }, "Back to the jobs")));
}

export function navigate(url, { replaceState = false } = {}) {
  if (replaceState) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

function render(message) {
  current?.abort();
  current = new AbortController();
  const { signal } = current;
  window.scrollTo(0, 0);
  replace(app);
  if (!apiKey.get()) {
    nav.hidden = true;
    signInView(app, { signal, message, onSignedIn: () => render() });
    return;
  }
  nav.hidden = false;
  const path = location.pathname;
  for (const [pattern, view] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      const params = match.slice(1).map(decodeURIComponent);
      const query = new URLSearchParams(location.search);
      view()(app, { params, query, signal, navigate });
      return;
    }
  }
  notFoundView(app);
}

onUnauthorized((detail) => {
  apiKey.clear();
  render(`The API key was refused: ${detail}`);
});

connection.subscribe((lost) => {
  banner.hidden = !lost;
  document.body.classList.toggle("offline", lost);
});

document.addEventListener("click", (event) => {
  const a = event.target.closest("a");
  if (!a || a.hasAttribute("data-external") || a.hasAttribute("download")) return;
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui")) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

document.getElementById("sign-out").addEventListener("click", () => {
  apiKey.clear();
  render("Signed out.");
});

window.addEventListener("popstate", () => render());
render();
