// The HTTP API as the dashboard sees it: every call carries `Authorization: Bearer <key>`,
// every error becomes an ApiError with the server's `detail`, and server-sent events are
// read from a fetch() body (EventSource cannot send headers).

// The dashboard lives at <root>/ui/, so the API root is one level up; this keeps working
// behind a reverse proxy that mounts TalkTuah under a path prefix.
const ROOT = new URL("../", document.baseURI);

let apiKey = null;
let unauthorizedHandler = () => {};

export function setKey(key) {
  apiKey = key;
}

/** Called with the server's message whenever it answers 401 (the key stopped working). */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export function url(path, query = {}) {
  const target = new URL(path.replace(/^\//, ""), ROOT);
  for (const [name, value] of Object.entries(query)) {
    if (value === null || value === undefined || value === "") continue;
    target.searchParams.set(name, String(value));
  }
  return target;
}

function headers(extra = {}) {
  const all = { Accept: "application/json", ...extra };
  if (apiKey) all.Authorization = `Bearer ${apiKey}`;
  return all;
}

async function errorFrom(response) {
  let detail = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    const found = body && (body.detail ?? body.error?.message ?? body.message);
    if (typeof found === "string") detail = found;
    else if (found) detail = JSON.stringify(found);
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, detail);
}

async function send(method, path, { query, body, signal, accept } = {}) {
  const init = { method, headers: headers(accept ? { Accept: accept } : {}), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "Cannot reach the TalkTuah server. Is it still running?");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && path !== "/api/healthz") unauthorizedHandler(error.detail);
    throw error;
  }
  return response;
}

/** A JSON call; resolves to {status, data}. */
export async function request(method, path, options = {}) {
  const response = await send(method, path, options);
  const text = await response.text();
  return { status: response.status, data: text ? JSON.parse(text) : null };
}

export const get = (path, query, options = {}) => request("GET", path, { ...options, query });

/**
 * Read a text/event-stream response and call onEvent({event, data}) per event.
 * Resolves when the server closes the stream; rejects with ApiError on an HTTP error.
 */
export async function streamEvents(method, path, { query, body, signal, onEvent }) {
  const response = await send(method, path, {
    query, body, signal, accept: "text/event-stream",
  });
  const reader = response.body.getReader();
  const parser = new SseParser(onEvent);
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
    }
    parser.feed(decoder.decode());
    parser.end();
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** The text/event-stream format: lines end in \r\n, \n or \r; a blank line ends an event. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.skipLf = false; // the previous chunk ended in \r: a leading \n belongs to it
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
  }

  feed(text) {
    if (this.skipLf && text.startsWith("\n")) text = text.slice(1);
    this.skipLf = text.endsWith("\r");
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent({ event: this.event || "message", data: this.data.join("\n") });
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment / keep-alive ping
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
  }

  end() {
    if (this.buffer) this.line(this.buffer);
    this.buffer = "";
    this.line("");
  }
}
