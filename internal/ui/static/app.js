// The Locklock dashboard (API.md §11). Everything a lock's taker wrote —
// names, holders, metadata — reaches the page through textContent and text
// nodes only, never as markup; the page's CSP refuses HTML sinks outright.
import {
  Client, ApiError, EventStream, compareTokens, lockPath, semaphorePath, slotPath,
} from './api.js';

const KEY_STORAGE = 'locklock.apiKey';
const MAX_EVENTS = 200; // the events log keeps this many
const MAX_LIST = 5000; // items listed per kind; more are noted, not shown
const ENDS = new Set(['released', 'expired', 'revoked']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const $ = (id) => document.getElementById(id);

// el builds an element; strings among children become text nodes.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) e.append(c);
  }
  return e;
}

// ---- formatting ----

const pad = (n, w = 2) => String(n).padStart(w, '0');

function isToday(d) {
  const now = new Date();
  return d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
}

function clock(d, ms) {
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return ms ? `${t}.${pad(d.getMilliseconds(), 3)}` : t;
}

// when is a time as people read it: the clock today, the date before.
function when(iso, ms) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  if (isToday(d)) return clock(d, ms);
  return `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${clock(d, ms)}`;
}

function timeEl(iso, ms) {
  return el('time', { datetime: iso, title: new Date(iso).toString() }, when(iso, ms));
}

// countdown is the time left, to the second: "29d 23:59:58", "1:02:03", "4:05".
function countdown(ms) {
  if (ms <= 0) return 'expiring…';
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor(s / 3600) % 24;
  const m = Math.floor(s / 60) % 60;
  const sec = s % 60;
  if (d > 0) return `${d}d ${pad(h)}:${pad(m)}:${pad(sec)}`;
  if (h > 0) return `${h}:${pad(m)}:${pad(sec)}`;
  return `${m}:${pad(sec)}`;
}

function seconds(n) {
  if (n < 120) return `${n} s`;
  if (n < 7200) return `${Math.round(n / 60)} min`;
  return `${Math.round(n / 3600)} h`;
}

function kindBadge(kind) {
  return el('span', { class: `kind kind-${kind}`, title: kind === 'uuid' ? 'UUID name' : 'custom name' }, kind);
}

function nameEl(kind, name) {
  return el('span', { class: 'name-cell' }, kindBadge(kind), el('span', { class: 'name mono', title: name }, name));
}

function holderEl(holder) {
  return holder ? el('span', { class: 'holder', title: holder }, holder) : el('span', { class: 'muted' }, '—');
}

function metadataEl(md) {
  const keys = Object.keys(md || {}).sort();
  if (keys.length === 0) return el('span', { class: 'muted' }, '—');
  return el('span', { class: 'meta' }, keys.map((k) => el('span', { class: 'meta-item', title: `${k}=${md[k]}` },
    el('span', { class: 'meta-k' }, k), el('span', { class: 'meta-v' }, md[k]))));
}

function protectedEl(p) {
  return el('span', { class: p ? 'prot yes' : 'prot no' }, p ? 'Yes' : 'No');
}

// expiresEl is a live countdown: tick() updates every [data-expires].
function expiresEl(iso) {
  const e = el('span', { class: 'countdown', dataset: { expires: iso } });
  updateCountdown(e);
  return e;
}

function updateCountdown(e) {
  if (e.expiresMs === undefined) e.expiresMs = Date.parse(e.dataset.expires);
  const left = e.expiresMs - clientNow();
  const text = countdown(left);
  if (e.textContent !== text) e.textContent = text;
  e.classList.toggle('soon', left < 60000 && left > 10000);
  e.classList.toggle('due', left <= 10000);
}

// ---- page state ----

let session = null; // the namespace view, with a key
let lookup = null; // the one-lock view, without
const filter = { kind: '', prefix: '' };

function clientNow() {
  return (session || lookup) ? (session || lookup).client.now() : Date.now();
}

function matches(kind, name) {
  if (filter.kind && kind !== filter.kind) return false;
  if (!filter.prefix) return true;
  // UUIDs are stored in lower case and matched without case, as the API does.
  return kind === 'uuid' ? name.startsWith(filter.prefix.toLowerCase()) : name.startsWith(filter.prefix);
}

// ---- status: connection, errors, outcomes ----

function setConn(state, text, title) {
  const c = $('conn');
  c.dataset.state = state;
  $('conn-text').textContent = text;
  if (title) c.title = title; else c.removeAttribute('title');
}

function showError(err) {
  const title = err instanceof ApiError ? err.title : 'Something went wrong';
  const detail = err instanceof ApiError ? err.detail : String(err && err.message || err);
  $('alert-title').textContent = title;
  $('alert-detail').textContent = detail;
  $('alert').hidden = false;
}

function clearError() {
  $('alert').hidden = true;
}

let toastTimer = 0;
function toast(text, kind) {
  const t = $('toast');
  t.textContent = text;
  t.dataset.kind = kind || 'ok';
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 6000);
}

// ---- keyed list rendering: rows are kept, so focus and selection survive updates ----

function sync(parent, items, keyOf, make, update) {
  const old = new Map();
  for (const child of parent.children) old.set(child.dataset.key, child);
  let prev = null;
  for (const item of items) {
    const key = keyOf(item);
    let node = old.get(key);
    if (node) {
      old.delete(key);
      update(node, item);
    } else {
      node = make(item);
      node.dataset.key = key;
    }
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (node !== want) parent.insertBefore(node, want);
    prev = node;
  }
  for (const node of old.values()) node.remove();
}

// fill replaces an element's children, when what they show has changed.
function fill(node, sig, ...children) {
  if (node.dataset.sig === sig) return;
  node.dataset.sig = sig;
  node.replaceChildren(...children.flat());
}

// ---- the namespace view ----

class Session {
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

function inUse(sem) {
  let n = 0;
  for (const s of sem.slots.values()) n += s.weight;
  return n;
}

// ---- rendering the namespace view ----

let renderQueued = false;
// render coalesces the changes of a burst of events into one update. It
// uses a timer rather than requestAnimationFrame, which stops in a tab
// that is not shown, so the page is current when it is shown again.
function render() {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(() => {
    renderQueued = false;
    renderNow();
  }, 16);
}

function renderNow() {
  if (!session) return;
  const s = session;
  const operator = !!(s.who && s.who.operator);
  document.body.classList.toggle('is-operator', operator);

  const locks = [...s.locks.values()].filter((l) => matches(l.kind, l.name))
    .sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : a.kind < b.kind ? -1 : 1);
  sync($('locks-body'), locks, (l) => `${l.kind}/${l.name}`, lockRow, updateLockRow);
  $('locks-empty').hidden = locks.length > 0;
  $('locks-empty').textContent = s.locks.size ? 'No locks match the filter.' : (s.listed ? 'No locks held.' : 'Loading…');
  $('locks-table').hidden = locks.length === 0;
  $('locks-note').textContent = s.notes.locks;

  const sems = [...s.sems.values()].filter((m) => matches(m.kind, m.name))
    .sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : a.kind < b.kind ? -1 : 1);
  sync($('sems-list'), sems, (m) => `${m.kind}/${m.name}`, semCard, updateSemCard);
  $('sems-empty').hidden = sems.length > 0;
  $('sems-empty').textContent = s.sems.size ? 'No semaphores match the filter.' : (s.listed ? 'No semaphores in use.' : 'Loading…');
  $('sems-note').textContent = s.notes.sems;

  let slots = 0;
  for (const m of sems) slots += m.slots.size;
  stat('locks', locks.length, 'lock', 'locks');
  stat('sems', sems.length, 'semaphore', 'semaphores');
  stat('slots', slots, 'slot', 'slots');

  const events = s.events.filter((e) => {
    const x = e.data.lock || e.data.slot;
    return !x || matches(x.kind, x.name);
  });
  sync($('events-list'), events, (e) => String(e.seq), eventItem, () => {});
  $('events-empty').hidden = events.length > 0;
}

function stat(id, n, one, many) {
  $(`stat-${id}`).textContent = n.toLocaleString();
  $(`stat-${id}-label`).textContent = n === 1 ? one : many;
}

function lockRow(l) {
  const tr = el('tr');
  for (let i = 0; i < 7; i++) tr.append(el('td'));
  const [, , tok, , exp, , ops] = tr.children;
  tok.className = 'num mono token';
  exp.className = 'num';
  ops.className = 'op-col';
  const key = `${l.kind}/${l.name}`;
  ops.append(el('button', {
    type: 'button', class: 'btn btn-danger-quiet btn-small', 'aria-label': `Force release lock ${key}`,
    onclick: (e) => {
      const cur = session && session.locks.get(key);
      if (cur) askForce({ lock: cur }, e.currentTarget);
    },
  }, 'Force release'));
  updateLockRow(tr, l);
  return tr;
}

// holderCell is the holder with the metadata under it: who, then what
// they said about it.
function holderCell(x) {
  const out = [holderEl(x.holder)];
  if (x.metadata && Object.keys(x.metadata).length) out.push(metadataEl(x.metadata));
  return out;
}

function updateLockRow(tr, l) {
  const sig = JSON.stringify(l);
  if (tr.dataset.sig === sig) return;
  const fresh = tr.dataset.sig !== undefined;
  tr.dataset.sig = sig;
  const [name, holder, tok, acq, exp, prot] = tr.children;
  name.replaceChildren(nameEl(l.kind, l.name));
  holder.replaceChildren(...holderCell(l));
  tok.textContent = l.fencing_token;
  acq.replaceChildren(timeEl(l.acquired_at));
  exp.replaceChildren(expiresEl(l.expires_at));
  if (l.lock_delay) {
    exp.append(el('span', { class: 'sub', title: 'after an expiry or a forced release, nobody may take it for this long' },
      `then ${seconds(l.lock_delay)} delay`));
  }
  prot.replaceChildren(protectedEl(l.protected));
  if (fresh) {
    // A change the stream reported: highlight it for a moment.
    tr.classList.remove('flash');
    void tr.offsetWidth;
    tr.classList.add('flash');
  }
}

function semCard(m) {
  const key = `${m.kind}/${m.name}`;
  const card = el('article', { class: 'sem', 'aria-label': `Semaphore ${key}` },
    el('div', { class: 'sem-head' }, nameEl(m.kind, m.name), el('span', { class: 'sem-usage' })),
    el('div', { class: 'bar', 'aria-hidden': 'true' }, el('span', { class: 'bar-fill' })),
    el('table', { class: 'grid slots' },
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col' }, 'Holder'),
        el('th', { scope: 'col', class: 'num' }, 'Weight'),
        el('th', { scope: 'col', class: 'num' }, 'Fencing token'),
        el('th', { scope: 'col' }, 'Acquired'),
        el('th', { scope: 'col', class: 'num' }, 'Expires in'),
        el('th', { scope: 'col' }, 'Protected'),
        el('th', { scope: 'col', class: 'op-col' }, el('span', { class: 'visually-hidden' }, 'Actions')))),
      el('tbody')));
  updateSemCard(card, m);
  return card;
}

function updateSemCard(card, m) {
  const used = inUse(m);
  const usage = card.querySelector('.sem-usage');
  fill(usage, `${used}/${m.limit}`, el('strong', {}, String(used)), ` / ${m.limit} in use`);
  const pct = m.limit ? Math.min(100, (100 * used) / m.limit) : 0;
  const fillEl = card.querySelector('.bar-fill');
  fillEl.style.width = `${pct}%`; // CSSOM, which a style-src 'self' policy allows
  card.classList.toggle('full', used >= m.limit);
  const slots = [...m.slots.values()].sort((a, b) => compareTokens(a.fencing_token, b.fencing_token));
  sync(card.querySelector('tbody'), slots, (s) => s.slot, (s) => slotRow(m, s), updateSlotRow);
}

function slotRow(m, s) {
  const tr = el('tr');
  for (let i = 0; i < 7; i++) tr.append(el('td'));
  const [, w, tok, , exp, , ops] = tr.children;
  w.className = 'num';
  tok.className = 'num mono token';
  exp.className = 'num';
  ops.className = 'op-col';
  const semKey = `${m.kind}/${m.name}`;
  ops.append(el('button', {
    type: 'button', class: 'btn btn-danger-quiet btn-small',
    'aria-label': `Force release slot ${s.slot} of semaphore ${semKey}${s.holder ? ` held by ${s.holder}` : ''}`,
    onclick: (e) => {
      const sem = session && session.sems.get(semKey);
      const cur = sem && sem.slots.get(s.slot);
      if (cur) askForce({ slot: cur }, e.currentTarget);
    },
  }, 'Force release'));
  updateSlotRow(tr, s);
  return tr;
}

function updateSlotRow(tr, s) {
  const sig = JSON.stringify(s);
  if (tr.dataset.sig === sig) return;
  tr.dataset.sig = sig;
  const [holder, w, tok, acq, exp, prot] = tr.children;
  holder.replaceChildren(...holderCell(s));
  w.textContent = String(s.weight);
  tok.textContent = s.fencing_token;
  acq.replaceChildren(timeEl(s.acquired_at));
  exp.replaceChildren(expiresEl(s.expires_at));
  prot.replaceChildren(protectedEl(s.protected));
}

function eventItem(e) {
  const d = e.data;
  if (d.type === 'reset') {
    return el('li', { class: 'ev ev-system' },
      el('span', { class: 'ev-head' },
        el('span', { class: 'ev-type t-reset' }, 'reset'),
        el('span', { class: 'ev-what' }, 'events were missed: listed again')),
      el('span', { class: 'ev-details' }, el('time', { class: 'ev-time', datetime: d.at }, when(d.at, true))));
  }
  const x = d.lock || d.slot;
  const details = [
    el('time', { class: 'ev-time', datetime: d.at, title: new Date(d.at).toString() }, when(d.at, true)),
    el('span', { class: 'ev-token', title: 'fencing token' }, `#${x.fencing_token}`),
  ];
  if (d.slot) details.push(el('span', { class: 'ev-slot', title: `slot ${d.slot.slot}` }, `slot ${d.slot.slot.slice(0, 6)}…`));
  if (x.holder) details.push(el('span', { class: 'ev-holder', title: x.holder }, x.holder));
  if (d.delayed_until) details.push(el('span', { class: 'ev-delay' }, 'delayed until ', timeEl(d.delayed_until)));
  return el('li', { class: `ev t-${d.type}` },
    el('span', { class: 'ev-head' },
      el('span', { class: `ev-type t-${d.type}` }, d.type),
      el('span', { class: 'ev-what' }, kindBadge(x.kind), el('span', { class: 'name mono', title: x.name }, x.name))),
    el('span', { class: 'ev-details' }, details));
}

// ---- forced release ----

let forceTarget = null;

function factsOf(x, isSlot) {
  const rows = [
    ['Name', nameEl(x.kind, x.name)],
  ];
  if (isSlot) rows.push(['Slot', el('span', { class: 'mono' }, x.slot)], ['Weight', `${x.weight} of ${x.limit}`]);
  rows.push(
    ['Holder', holderEl(x.holder)],
    ['Metadata', metadataEl(x.metadata)],
    ['Fencing token', el('span', { class: 'mono' }, x.fencing_token)],
    ['Acquired', timeEl(x.acquired_at)],
    ['Expires in', expiresEl(x.expires_at)],
    ['Protected', protectedEl(x.protected)],
  );
  if (x.lock_delay) rows.push(['Lock-delay', seconds(x.lock_delay)]);
  return rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]);
}

function askForce(target, opener) {
  const dialog = $('force-dialog');
  const x = target.lock || target.slot;
  forceTarget = { ...target, opener };
  const what = target.lock ? 'lock' : 'slot of semaphore';
  $('force-title').textContent = target.lock ? 'Force release this lock?' : 'Force release this slot?';
  $('force-desc').replaceChildren(
    `This ends the ${what} `, el('strong', { class: 'mono' }, `${x.kind}/${x.name}`),
    ' now, without its secret, and announces it as ', el('code', {}, 'revoked'), '.',
    target.lock && target.lock.lock_delay
      ? ` Nobody may take it for ${seconds(target.lock.lock_delay)} after that (its lock-delay).` : '');
  $('force-facts').replaceChildren(...factsOf(x, !!target.slot));
  $('force-error').hidden = true;
  $('force-confirm').disabled = false;
  $('force-confirm').textContent = 'Force release';
  dialog.showModal();
}

async function confirmForce() {
  const t = forceTarget;
  if (!t || !session) return;
  const s = session;
  const x = t.lock || t.slot;
  const path = t.lock ? lockPath(x.kind, x.name) : slotPath(x.kind, x.name, x.slot);
  const confirm = $('force-confirm');
  confirm.disabled = true;
  confirm.textContent = 'Releasing…';
  try {
    const out = await s.client.request('DELETE', path, { headers: { 'Locklock-Force': 'true' } });
    const ended = out.lock || out.slot;
    s.apply(t.lock ? { type: 'revoked', lock: ended } : { type: 'revoked', slot: ended });
    render();
    $('force-dialog').close();
    toast(`Force-released ${t.lock ? 'lock' : 'a slot of'} ${x.kind}/${x.name} (fencing token ${ended.fencing_token}).`);
  } catch (err) {
    if (err instanceof ApiError && (err.code === 'lock_not_found' || err.code === 'slot_not_found')) {
      $('force-dialog').close();
      toast(`${x.kind}/${x.name} had already ended.`, 'info');
      return;
    }
    const box = $('force-error');
    box.replaceChildren(el('strong', {}, err instanceof ApiError ? err.title : 'Failed'),
      el('span', { class: 'detail' }, err instanceof ApiError ? err.detail : String(err)));
    box.hidden = false;
    confirm.disabled = false;
    confirm.textContent = 'Force release';
  }
}

// ---- the one-lock view, for visitors without a key ----

class Lookup {
  constructor(uuid) {
    this.client = new Client('');
    this.uuid = uuid.toLowerCase();
    this.lock = undefined; // undefined: not known yet; null: not held
    this.delayedUntil = '';
    this.events = [];
    this.seq = 0;
    this.stream = null;
    this.closed = false;
  }

  async start() {
    try {
      this.lock = await this.client.get(lockPath('uuid', this.uuid));
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'lock_not_found')) throw err;
      this.lock = null;
      this.delayedUntil = err.problem.delayed_until || '';
    }
    if (this.closed) return;
    renderLookup();
    this.stream = new EventStream(this.client, `${lockPath('uuid', this.uuid)}/events`, {
      onEvent: (ev) => this.onEvent(ev),
      onStatus: (state, err, wait) => {
        if (this.closed) return;
        if (state === 'open') setConn('live', 'Watching');
        else if (state === 'retrying') setConn('retrying', `Reconnecting in ${Math.ceil(wait / 1000)} s`, err && err.message);
        else if (state === 'failed') { setConn('failed', 'Disconnected', err && err.message); showError(err); }
        else setConn('connecting', 'Connecting…');
      },
    }).start();
  }

  close() {
    this.closed = true;
    if (this.stream) this.stream.stop();
  }

  onEvent(ev) {
    if (this.closed || !ev.data) return;
    if (ev.type === 'state') {
      this.lock = ev.data.lock;
      if (this.lock) this.delayedUntil = '';
    } else if (ev.type === 'reset') {
      this.stream.forget();
    } else if (ev.data.lock) {
      this.events.unshift({ seq: ++this.seq, data: ev.data });
      if (this.events.length > 50) this.events.length = 50;
      if (ENDS.has(ev.type)) {
        this.lock = null;
        this.delayedUntil = ev.data.delayed_until || '';
      } else {
        this.lock = ev.data.lock;
        this.delayedUntil = '';
      }
    }
    renderLookup();
  }
}

function renderLookup() {
  const l = lookup;
  const box = $('lookup-result');
  box.hidden = !l;
  if (!l) return;
  const st = $('lookup-state');
  if (l.lock) {
    st.dataset.state = 'held';
    st.replaceChildren(el('strong', {}, 'Held'), ' ', el('span', { class: 'mono' }, l.uuid));
    $('lookup-facts').replaceChildren(...factsOf(l.lock, false));
  } else {
    st.dataset.state = l.lock === null ? 'free' : 'loading';
    st.replaceChildren(el('strong', {}, l.lock === null ? 'Free' : 'Looking up…'), ' ', el('span', { class: 'mono' }, l.uuid));
    const facts = [];
    if (l.delayedUntil) facts.push(el('dt', {}, 'Delayed until'), el('dd', {}, timeEl(l.delayedUntil)));
    if (l.lock === null) facts.push(el('dt', {}, 'Holder'), el('dd', {}, el('span', { class: 'muted' }, 'nobody holds this lock')));
    $('lookup-facts').replaceChildren(...facts);
  }
  sync($('lookup-events'), l.events, (e) => String(e.seq), eventItem, () => {});
  $('lookup-events-empty').hidden = l.events.length > 0;
}

// ---- switching between the views ----

function showView() {
  const keyed = !!session;
  $('anonymous-view').hidden = keyed;
  $('namespace-view').hidden = !keyed;
  $('identity').hidden = !keyed || !session.who;
  if (keyed && session.who) {
    const w = session.who;
    $('who-namespace').textContent = w.namespace;
    $('who-plan').textContent = w.plan;
    $('who-key').textContent = w.key_id || '';
    $('who-key-item').hidden = !w.key_id;
    $('who-operator').hidden = !w.operator;
  }
}

async function connect(key) {
  clearError();
  if (lookup) {
    lookup.close();
    lookup = null;
    renderLookup();
  }
  const s = new Session(key);
  setConn('connecting', 'Checking the key…');
  $('key-submit').disabled = true;
  try {
    await s.start();
  } catch (err) {
    s.close();
    setConn('failed', 'Not connected');
    showError(err);
    if (err instanceof ApiError && err.status === 401) {
      // A typo, most likely: ready to be typed over.
      sessionStorage.removeItem(KEY_STORAGE);
      $('key-input').focus();
      $('key-input').select();
    }
    return;
  } finally {
    $('key-submit').disabled = false;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  $('key-input').value = '';
  session = s;
  showView();
  renderNow();
  toast(`Connected to namespace ${s.who.namespace}.`);
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  if (session) session.close();
  session = null;
  for (const id of ['locks-body', 'sems-list', 'events-list']) $(id).replaceChildren();
  document.body.classList.remove('is-operator');
  clearError();
  setConn('idle', 'Not connected');
  showView();
  $('key-input').focus();
  toast('The key is forgotten.', 'info');
}

async function startLookup(raw) {
  clearError();
  const uuid = raw.trim();
  if (!UUID.test(uuid)) {
    showError(new ApiError(0, { title: 'Not a UUID', detail: 'a lock UUID has 32 hex digits as 8-4-4-4-12, e.g. 180da65c-cf80-4997-8574-0c0801817d6f' }));
    return;
  }
  if (lookup) lookup.close();
  lookup = new Lookup(uuid);
  renderLookup();
  try {
    await lookup.start();
  } catch (err) {
    showError(err);
  }
}

function stopLookup() {
  if (lookup) lookup.close();
  lookup = null;
  renderLookup();
  setConn('idle', 'Not connected');
  $('lookup-input').focus();
}

// ---- wiring ----

function init() {
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('key-input').value.trim();
    if (!key) {
      showError(new ApiError(0, { title: 'No key', detail: 'type or paste an API key first' }));
      $('key-input').focus();
      return;
    }
    connect(key);
  });
  $('forget-key').addEventListener('click', forgetKey);
  $('lookup-form').addEventListener('submit', (e) => {
    e.preventDefault();
    startLookup($('lookup-input').value);
  });
  $('lookup-stop').addEventListener('click', stopLookup);
  $('alert-close').addEventListener('click', clearError);
  $('force-cancel').addEventListener('click', () => $('force-dialog').close());
  $('force-confirm').addEventListener('click', confirmForce);
  $('force-dialog').addEventListener('close', () => {
    const t = forceTarget;
    forceTarget = null;
    // Back to the button that opened it; if its row is gone, to the page.
    if (t && t.opener && t.opener.isConnected) t.opener.focus();
    else if (t) $('main').focus();
  });
  $('filter-kind').addEventListener('change', (e) => {
    filter.kind = e.target.value;
    renderNow();
  });
  $('filter-prefix').addEventListener('input', (e) => {
    filter.prefix = e.target.value.trim();
    renderNow();
  });
  // Countdowns move every second. Each has its own second boundaries, so
  // they are checked ten times a second (the text changes once): a
  // countdown is never more than 0.1 s behind the clock.
  setInterval(() => {
    for (const e of document.querySelectorAll('[data-expires]')) updateCountdown(e);
  }, 100);

  const saved = sessionStorage.getItem(KEY_STORAGE);
  showView();
  if (saved) connect(saved);
}

init();
