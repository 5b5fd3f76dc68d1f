// The namespace view's model: what a key may see — its locks, its
// semaphores' slots, the recent events — kept current by listing once and
// then applying the namespace's event stream (list-then-watch). After each
// change it asks render.js to draw it again.
import { ApiError, Client, EventStream, compareTokens, semaphorePath } from './api.js';
import { render } from './render.js';
import { clientNow } from './state.js';
import { setConn, showError } from './status.js';

const MAX_EVENTS = 200; // the events log keeps this many
const MAX_LIST = 5000; // items listed per kind; more are noted, not shown

// ENDS are the event types after which a lock or slot is no longer held.
export const ENDS = new Set(['released', 'expired', 'revoked']);

export class Session {
  constructor(key) {
    this.client = new Client(key);
    this.who = null;
    this.locks = new Map(); // "kind/name" → lock object
    this.sems = new Map(); // "kind/name" → {kind, name, limit, slots: Map(slot id → slot)}
    this.events = []; // newest first: {seq, type, data}
    this.seq = 0;
    this.buffer = null; // events that came while a listing ran
    this.listGen = 0;
    this.listed = false;
    this.notes = { locks: '', sems: '' };
    this.stream = null;
    this.closed = false;
  }

  async start() {
    this.who = await this.client.get('whoami');
    this.stream = new EventStream(this.client, 'events', {
      onEvent: (ev) => this.onEvent(ev),
      onStatus: (state, err, wait) => this.onStatus(state, err, wait),
    }).start();
  }

  close() {
    this.closed = true;
    if (this.stream) this.stream.stop();
  }

  // Kubernetes' list-then-watch, made safe by the stream's ready: the
  // stream opens first, and a listing begun after ready misses nothing;
  // events that come while it runs are applied on top of it.
  onEvent(ev) {
    if (this.closed) return;
    switch (ev.type) {
      case 'ready':
        this.relist();
        return;
      case 'reset':
        // Events were missed: the next ready (in this stream, or after
        // reconnecting afresh) lists again.
        this.stream.forget();
        this.log({ type: 'reset', at: new Date(clientNow()).toISOString() });
        render();
        return;
      default:
        if (!ev.data || !(ev.data.lock || ev.data.slot)) return;
        this.log(ev.data);
        if (this.buffer) this.buffer.push(ev.data);
        else this.apply(ev.data);
        render();
    }
  }

  onStatus(state, err, wait) {
    if (this.closed) return;
    switch (state) {
      case 'connecting':
      case 'reconnecting':
        setConn('connecting', state === 'connecting' ? 'Connecting…' : 'Reconnecting…');
        break;
      case 'open':
        setConn('live', 'Live');
        break;
      case 'retrying':
        setConn('retrying', `Reconnecting in ${Math.ceil(wait / 1000)} s`, err && err.message);
        // Show what there is even while the stream cannot open.
        if (!this.listed) this.relist();
        break;
      case 'failed':
        setConn('failed', 'Disconnected', err && err.message);
        showError(err);
        if (!this.listed) this.relist();
        break;
      default:
    }
  }

  log(data) {
    this.events.unshift({ seq: ++this.seq, data });
    if (this.events.length > MAX_EVENTS) this.events.length = MAX_EVENTS;
  }

  apply(data) {
    if (data.lock) {
      const l = data.lock;
      const k = `${l.kind}/${l.name}`;
      const cur = this.locks.get(k);
      if (ENDS.has(data.type)) {
        if (cur && compareTokens(cur.fencing_token, l.fencing_token) <= 0) this.locks.delete(k);
      } else if (!cur || compareTokens(l.fencing_token, cur.fencing_token) >= 0) {
        this.locks.set(k, l);
      }
    } else if (data.slot) {
      const s = data.slot;
      const k = `${s.kind}/${s.name}`;
      let sem = this.sems.get(k);
      if (ENDS.has(data.type)) {
        if (!sem) return;
        sem.slots.delete(s.slot);
        if (sem.slots.size === 0) this.sems.delete(k);
      } else {
        if (!sem) {
          sem = { kind: s.kind, name: s.name, limit: s.limit, slots: new Map() };
          this.sems.set(k, sem);
        }
        sem.limit = s.limit;
        sem.slots.set(s.slot, s);
      }
    }
  }

  kinds() {
    return this.who && this.who.custom_names === false ? ['uuid'] : ['key', 'uuid'];
  }

  async relist() {
    const gen = ++this.listGen;
    this.buffer = [];
    try {
      const [locks, sems] = await Promise.all([this.listLocks(), this.listSemaphores()]);
      if (gen !== this.listGen || this.closed) return;
      this.locks = locks;
      this.sems = sems;
      for (const data of this.buffer) this.apply(data);
      this.listed = true;
    } catch (err) {
      if (gen === this.listGen && !this.closed) showError(err);
    } finally {
      if (gen === this.listGen) this.buffer = null;
      render();
    }
  }

  async listLocks() {
    const out = new Map();
    const cut = [];
    for (const kind of this.kinds()) {
      const { items, more } = await this.client.pages('locks', 'locks', { kind, limit: 1000 }, MAX_LIST);
      for (const l of items) out.set(`${l.kind}/${l.name}`, l);
      if (more) cut.push(kind);
    }
    this.notes.locks = cut.length ? `showing the first ${MAX_LIST.toLocaleString()} of ${cut.join(', ')}` : '';
    return out;
  }

  async listSemaphores() {
    const out = new Map();
    const summaries = [];
    const cut = [];
    for (const kind of this.kinds()) {
      const { items, more } = await this.client.pages('semaphores', 'semaphores', { kind, limit: 1000 }, MAX_LIST);
      summaries.push(...items);
      if (more) cut.push(kind);
    }
    // Each semaphore's slots, four requests at a time.
    const queue = summaries.slice();
    const worker = async () => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        const sem = await this.semaphore(s.kind, s.name);
        if (sem) out.set(`${s.kind}/${s.name}`, sem);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    this.notes.sems = cut.length ? `showing the first ${MAX_LIST.toLocaleString()} of ${cut.join(', ')}` : '';
    return out;
  }

  async semaphore(kind, name) {
    const sem = { kind, name, limit: 0, slots: new Map() };
    let after = '';
    for (let n = 0; n < MAX_LIST; ) {
      let page;
      try {
        page = await this.client.get(semaphorePath(kind, name), { query: { limit: 1000, after } });
      } catch (err) {
        // Its last slot ended between the listing and now.
        if (err instanceof ApiError && err.code === 'semaphore_not_found') return sem.slots.size ? sem : null;
        throw err;
      }
      sem.limit = page.limit;
      for (const s of page.slots || []) sem.slots.set(s.slot, s);
      n += (page.slots || []).length;
      if (!page.next) break;
      after = page.next;
    }
    return sem;
  }
}
