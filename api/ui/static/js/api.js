// Every request of the dashboard: the API key from sessionStorage as a Bearer header,
// problem+json errors as ApiError, a lost server as Offline (and the "reconnecting…" banner).

const KEY = "trainforge.apiKey";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
  // Every problem: the detail, then each field error at its dotted location.
  get errors() {
    return this.problem.errors || [];
  }
}

export class Offline extends Error {
  constructor() {
    super("The server cannot be reached.");
  }
}

let unauthorized = () => {};
export function onUnauthorized(handler) {
  unauthorized = handler;
}

// The connection: lost on a network error or a gateway error; a probe of /healthz
// brings it back by itself, whatever page is open.
const listeners = new Set();
let lost = false;
let probing = false;
export const connection = {
  get lost() {
    return lost;
  },
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  markLost() {
    if (!lost) {
      lost = true;
      listeners.forEach((fn) => fn(true));
    }
    probe();
  },
  markOk() {
    if (lost) {
      lost = false;
      listeners.forEach((fn) => fn(false));
    }
  },
};

async function probe() {
  if (probing) return;
  probing = true;
  while (lost) {
    await sleep(1000);
    try {
      const r = await fetch("/healthz", { cache: "no-store" });
      if (r.ok) connection.markOk();
    } catch {
      // still away
    }
  }
  probing = false;
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const GATEWAY = new Set([502, 503, 504]);

async function problemOf(res) {
  try {
    const body = await res.json();
    if (body && typeof body === "object") return body;
  } catch {
    // not JSON
  }
  return { title: res.statusText || `HTTP ${res.status}`, status: res.status };
}

export async function request(path, { method = "GET", json, body, headers = {}, signal } = {}) {
  const h = new Headers(headers);
  h.set("Authorization", `Bearer ${apiKey.get() || ""}`);
  if (json !== undefined) {
    h.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(path, { method, body, headers: h, signal, cache: "no-store" });
  } catch (err) {
    if (signal?.aborted) throw err;
    connection.markLost();
    throw new Offline();
  }
  if (GATEWAY.has(res.status) && !res.headers.get("content-type")?.includes("problem+json")) {
    connection.markLost();
    throw new Offline();
  }
  connection.markOk();
  if (res.status === 401) {
    const problem = await problemOf(res);
    unauthorized(problem.detail || "The API key was not accepted.");
    throw new ApiError(401, problem);
  }
  if (!res.ok) throw new ApiError(res.status, await problemOf(res));
  return res;
}

export async function getJSON(path, options) {
  const res = await request(path, options);
  return res.status === 204 ? null : res.json();
}

export function sendJSON(method, path, json, options = {}) {
  return getJSON(path, { ...options, method, json });
}

// Runs `fn` now and every `ms` until `signal` aborts; a lost server is retried each
// second (the banner says so), any other error goes to `onError`.
export async function poll(fn, ms, signal, onError = () => {}) {
  while (!signal.aborted) {
    let wait = ms;
    try {
      await fn();
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof Offline) wait = 1000;
      else if (err instanceof ApiError && err.status === 401) return;
      else onError(err);
    }
    await sleep(wait, signal);
  }
}

// A checkpoint download needs the Bearer header, so it is a fetch, then a blob link.
export async function download(path, filename) {
  const res = await request(path);
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// What this API offers (its OpenAPI paths), read once: optional panels (logs, sweeps)
// appear only where the server has the route, without probing for 404s.
let openapi = null;
export function hasRoute(path, method = "get") {
  openapi ??= fetch("/openapi.json", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : { paths: {} }))
    .catch(() => ({ paths: {} }));
  return openapi.then((doc) => Boolean(doc.paths?.[path]?.[method]));
}
