// Calls to the tickwire API of the server that served this page. The key lives in sessionStorage only (this tab,
// gone when it closes), is sent only as the Authorization header, and never goes into a URL.
"use strict";

const KEY_ITEM = "tickwire.console.key";

export function getKey() { return window.sessionStorage.getItem(KEY_ITEM); }
export function setKey(key) { window.sessionStorage.setItem(KEY_ITEM, key); }
export function forgetKey() { window.sessionStorage.removeItem(KEY_ITEM); }

export class ApiError extends Error {
  constructor(status, message, retryAfterS) {
    super(message);
    this.status = status;
    this.retryAfterS = retryAfterS || 0;
  }
}

function url(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.append(name, String(value));
  }
  const text = query.toString();
  return text ? path + "?" + text : path;
}

async function send(path, params, keyed, accept, signal) {
  const headers = {Accept: accept};
  if (keyed) {
    const key = getKey();
    if (!key) throw new ApiError(401, "no API key");
    headers.Authorization = "Bearer " + key;
  }
  const response = await fetch(url(path, params), {
    headers, signal, credentials: "omit", cache: "no-store", redirect: "error", referrerPolicy: "no-referrer",
  });
  return response;
}

async function failure(response) {
  let message = response.statusText || "error";
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") message = body.error;
  } catch (error) { /* not JSON */ }
  return new ApiError(response.status, message, Number(response.headers.get("Retry-After")) || 0);
}

/** GET a JSON answer (``keyed``: with the key). Rejects with ApiError for any status but 2xx (and 503 of /health). */
export async function getJson(path, params = {}, {keyed = true, signal, okStatuses = []} = {}) {
  const response = await send(path, params, keyed, "application/json", signal);
  if (!response.ok && !okStatuses.includes(response.status)) throw await failure(response);
  return await response.json();
}

/** GET a text answer without a key (/metrics). */
export async function getText(path, {signal} = {}) {
  const response = await send(path, {}, false, "text/plain", signal);
  if (!response.ok) throw await failure(response);
  return await response.text();
}

/**
 * Read /v1/ticks/stream (server-sent events) with fetch(), so that the key goes in the Authorization header
 * (EventSource cannot send one). Calls onTick(tick) for each `tick` event; resolves with the reason of the
 * server's `end` event (or "closed" when the connection ended without one); rejects with ApiError when the
 * stream is refused (401, 404, 429, 503) and with the abort when ``signal`` aborts.
 */
export async function readTickStream(symbol, broker, onTick, signal) {
  const response = await send("/v1/ticks/stream", {symbol, broker}, true, "text/event-stream", signal);
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return "closed";
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;  // a comment (keep-alive)
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "event") name = text;
          else if (field === "data") data.push(text);
        }
        if (!data.length) continue;
        const payload = JSON.parse(data.join("\n"));
        if (name === "tick") onTick(payload);
        else if (name === "end") return payload.reason || "end";
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Wait ``ms`` (resolves early, quietly, when ``signal`` aborts). */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
  });
}
