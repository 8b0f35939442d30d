// Talking to this server: the API key, JSON requests, problem details, Server-Sent Events.

const KEY_STORE = "ragmix-api-key"; // sessionStorage: gone when the tab closes

export function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// An error the server answered with RFC 9457 problem details (or a failed connection).
export class Problem extends Error {
  constructor(status, body) {
    super(body && body.detail ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code ? body.code : `http_${status}`;
  }
}

async function checked(response) {
  if (response.ok) return response;
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // not JSON: the status alone says what went wrong
  }
  throw new Problem(response.status, body);
}

// JSON from `method path`, with a JSON `body` or FormData `form`.
export async function request(method, path, { body, form } = {}) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) init.body = JSON.stringify(body);
  if (form) init.body = form;
  const response = await checked(await fetch(path, init));
  return response.json();
}

// POST `body` and call onEvent(name, data) for each Server-Sent Event until the stream ends.
export async function stream(path, body, onEvent, signal) {
  const response = await checked(await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(body),
    signal,
  }));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, end), onEvent);
      buffer = buffer.slice(end + 2);
    }
  }
}

function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a heartbeat comment
    if (line.startsWith("event: ")) name = line.slice(7);
    else if (line.startsWith("data: ")) data.push(line.slice(6));
  }
  if (data.length) onEvent(name, JSON.parse(data.join("\n")));
}
