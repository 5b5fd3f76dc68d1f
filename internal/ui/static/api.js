// Talking to the Locklock API: requests with the visitor's key, problems
// (API.md §4) as errors, fencing tokens kept exact, and event streams read
// with fetch (EventSource cannot send an Authorization header).

// The API's base, relative to the page (/ui/ → /v1/api/), so that the page
// works behind a proxy that serves the server under a path of its own.
export const apiBase = new URL('../v1/api/', document.baseURI);

// ApiError is a failed request: the problem's title and detail when the
// server sent one, else what went wrong on the way.
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.title + (problem.detail ? ': ' + problem.detail : ''));
    this.status = status;
    this.title = problem.title;
    this.detail = problem.detail || '';
    this.code = problem.code || '';
    this.problem = problem;
  }
}

// parseJSON reads an answer keeping fencing tokens exact: they are unsigned
// 64-bit numbers, beyond what a JavaScript number holds (2^53). The pattern
// cannot match inside a JSON string, where every quote is escaped.
export function parseJSON(text) {
  return JSON.parse(text.replace(/"fencing_token":(\d+)/g, '"fencing_token":"$1"'));
}

// compareTokens orders two tokens given as decimal strings.
export function compareTokens(a, b) {
  const x = BigInt(a), y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

// problemOf turns a failed response into an ApiError.
async function problemOf(resp) {
  let p = null;
  try {
    p = parseJSON(await resp.text());
  } catch (_) {
    // not JSON: a proxy's page, say
  }
  if (!p || typeof p.title !== 'string') {
    p = { title: `HTTP ${resp.status}`, detail: resp.statusText || '', status: resp.status };
  }
  return new ApiError(resp.status, p);
}

function networkError(err) {
  return new ApiError(0, { title: 'Cannot reach the server', detail: String(err && err.message || err) });
}

// Client makes requests with one key (or none: anonymous).
export class Client {
  constructor(key) {
    this.key = key || '';
    this.clockSkew = 0; // server time − local time, in ms, when they differ by more than 2 s
  }

  headers(extra) {
    const h = { Accept: 'application/json', ...extra };
    if (this.key) h.Authorization = 'Bearer ' + this.key;
    return h;
  }

  url(path, query) {
    const u = new URL(path, apiBase);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, v);
    }
    return u;
  }

  // request answers the parsed body, or throws an ApiError.
  async request(method, path, { query, headers, signal } = {}) {
    let resp;
    try {
      resp = await fetch(this.url(path, query), {
        method, headers: this.headers(headers), signal, cache: 'no-store',
      });
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw networkError(err);
    }
    this.noteDate(resp);
    if (!resp.ok) throw await problemOf(resp);
    return parseJSON(await resp.text());
  }

  get(path, opts) { return this.request('GET', path, opts); }

  // noteDate keeps the server's clock, so that countdowns end when the
  // server says, even on a machine whose clock is off. The Date header
  // has whole seconds: smaller differences are noise.
  noteDate(resp) {
    const d = Date.parse(resp.headers.get('Date') || '');
    if (Number.isNaN(d)) return;
    const skew = d + 500 - Date.now();
    this.clockSkew = Math.abs(skew) > 2000 ? skew : 0;
  }

  now() { return Date.now() + this.clockSkew; }

  // pages fetches every page of a listing (the next cursor in after),
  // up to max items; it answers the items and whether some were left.
  async pages(path, field, query, max) {
    const items = [];
    let after = '';
    for (;;) {
      const page = await this.get(path, { query: { ...query, after } });
      items.push(...(page[field] || []));
      if (!page.next) return { items, more: false };
      if (items.length >= max) return { items, more: true };
      after = page.next;
    }
  }
}

// lockPath and slotPath are a lock's and a slot's routes. Names are
// validated by the server; they are escaped all the same.
export function lockPath(kind, name) {
  return `lock/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`;
}
export function semaphorePath(kind, name) {
  return `semaphore/${encodeURIComponent(kind)}/${encodeURIComponent(name)}`;
}
export function slotPath(kind, name, slot) {
  return `${semaphorePath(kind, name)}/${encodeURIComponent(slot)}`;
}

// SSEParser reads the server-sent-events framing of the WHATWG spec:
// lines end in CRLF, LF or CR (a chunk may end between CR and LF), a
// leading BOM is dropped, ":" starts a comment, "field: value" sets a
// field, a blank line dispatches the event. The last event id persists
// across events until an id field changes it.
export class SSEParser {
  constructor(onEvent, onComment) {
    this.onEvent = onEvent;
    this.onComment = onComment || (() => {});
    this.buf = '';
    this.started = false;
    this.data = [];
    this.type = '';
    this.lastId = '';
    this.retry = null;
  }

  push(text) {
    this.buf += text;
    if (!this.started && this.buf.length > 0) {
      this.started = true;
      if (this.buf.charCodeAt(0) === 0xfeff) this.buf = this.buf.slice(1);
    }
    const eol = /\r\n|\r|\n/g;
    let start = 0;
    let m;
    while ((m = eol.exec(this.buf)) !== null) {
      if (m[0] === '\r' && m.index === this.buf.length - 1) break; // maybe CRLF split in two chunks
      this.line(this.buf.slice(start, m.index));
      start = m.index + m[0].length;
    }
    this.buf = this.buf.slice(start);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line[0] === ':') {
      this.onComment(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    switch (field) {
      case 'event': this.type = value; break;
      case 'data': this.data.push(value); break;
      case 'id': if (!value.includes('\0')) this.lastId = value; break;
      case 'retry': if (/^\d+$/.test(value)) this.retry = Number(value); break;
      default: break; // unknown fields are ignored
    }
  }

  dispatch() {
    const type = this.type || 'message';
    const data = this.data.join('\n');
    const had = this.data.length > 0;
    this.type = '';
    this.data = [];
    if (had) this.onEvent({ type, data, id: this.lastId });
  }
}

// EventStream keeps one event stream open: it reconnects with backoff
// after a drop and resumes with Last-Event-ID, and it gives up (failed)
// only on answers that a retry cannot change (400, 401, 403, 404).
// onEvent gets {type, data (parsed), id}; onStatus gets
// (state, detail): "connecting", "open", "retrying" (with an ApiError and
// the delay in ms) or "failed" (with an ApiError).
export class EventStream {
  constructor(client, path, { onEvent, onStatus }) {
    this.client = client;
    this.path = path;
    this.onEvent = onEvent;
    this.onStatus = onStatus || (() => {});
    this.lastId = '';
    this.stopped = false;
    this.ctrl = null;
    this.watchdog = 0;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.watchdog);
    if (this.ctrl) this.ctrl.abort();
  }

  // forget drops the position, so that the next connection starts afresh
  // (after a reset, whose frame carries no id on purpose).
  forget() {
    this.lastId = '';
    if (this.parser) this.parser.lastId = '';
  }

  async run() {
    let attempt = 0;
    while (!this.stopped) {
      this.onStatus(attempt === 0 ? 'connecting' : 'reconnecting');
      const ctrl = new AbortController();
      this.ctrl = ctrl;
      const headers = { Accept: 'text/event-stream' };
      if (this.lastId) headers['Last-Event-ID'] = this.lastId;
      let wait = 0;
      try {
        const resp = await fetch(this.client.url(this.path), {
          headers: this.client.headers(headers), signal: ctrl.signal, cache: 'no-store',
        });
        if (!resp.ok) {
          const err = await problemOf(resp);
          if ([400, 401, 403, 404].includes(resp.status)) {
            this.onStatus('failed', err);
            return;
          }
          throw Object.assign(err, { retryAfter: Number(resp.headers.get('Retry-After')) || 0 });
        }
        this.onStatus('open');
        await this.read(resp.body, () => { attempt = 0; });
        if (this.stopped) return;
        throw new ApiError(0, { title: 'The event stream ended', detail: 'the server closed it' });
      } catch (err) {
        if (this.stopped) return;
        const e = err instanceof ApiError ? err
          : (err && err.name === 'AbortError') ? new ApiError(0, { title: 'The event stream went quiet', detail: 'no ping for 45 s' })
          : networkError(err);
        // Exponential backoff with jitter, 0.5 s to 15 s; a server's
        // Retry-After is honoured.
        wait = Math.min(15000, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);
        if (e.retryAfter) wait = Math.max(wait, e.retryAfter * 1000);
        attempt++;
        this.onStatus('retrying', e, wait);
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  // read parses the body until it ends. A stream that sends nothing for
  // 45 s (the server pings every 15 s) is taken for dead and aborted.
  async read(body, alive) {
    const parser = new SSEParser((ev) => {
      this.lastId = ev.id;
      alive();
      let data = null;
      try {
        data = parseJSON(ev.data);
      } catch (_) {
        return; // not ours to understand
      }
      this.onEvent({ type: ev.type, data, id: ev.id });
    });
    parser.lastId = this.lastId; // as the spec's buffer, kept across reconnections
    this.parser = parser;
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    const arm = () => {
      clearTimeout(this.watchdog);
      this.watchdog = setTimeout(() => this.ctrl && this.ctrl.abort(), 45000);
    };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        arm();
        parser.push(value);
      }
    } finally {
      clearTimeout(this.watchdog);
    }
  }
}
