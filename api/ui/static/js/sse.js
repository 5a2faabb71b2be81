// Server-Sent Events over fetch (EventSource cannot send the Authorization header).
// Reconnects with Last-Event-ID after a lost connection, so nothing is missed; stops
// after the server's `end` event, when `signal` aborts, or on an API error (401, 404).

import { ApiError, Offline, connection, request, sleep } from "./api.js";

function parseField(line, event) {
  const colon = line.indexOf(":");
  const field = colon === -1 ? line : line.slice(0, colon);
  let value = colon === -1 ? "" : line.slice(colon + 1);
  if (value.startsWith(" ")) value = value.slice(1);
  if (field === "data") event.data.push(value);
  else if (field === "event") event.event = value;
  else if (field === "id") event.id = value;
  else if (field === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
}

export async function followEvents(path, { onEvent, signal }) {
  let lastId = null;
  let retryMs = 1000;
  while (!signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const res = await request(path, { headers, signal });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = { data: [], event: "message", id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, "");
          buffer = buffer.slice(newline + 1);
          if (line === "") {
            if (event.retry) retryMs = event.retry;
            if (event.id !== null) lastId = event.id;
            if (event.data.length) {
              const data = JSON.parse(event.data.join("\n"));
              onEvent(event.event, data, event.id);
              if (event.event === "end") {
                reader.cancel().catch(() => {});
                return;
              }
            }
            event = { data: [], event: "message", id: null };
          } else if (!line.startsWith(":")) {
            parseField(line, event);
          }
        }
      }
      // Closed without `end` (the server went away mid-stream): reconnect.
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError) throw err;
      if (!(err instanceof Offline)) connection.markLost();
    }
    await sleep(retryMs, signal);
  }
}
