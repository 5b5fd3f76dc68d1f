// The one-lock view, for visitors without a key (API.md §11): anyone who
// knows a UUID lock's name may read it, so the page looks it up and then
// follows that lock's own event stream, showing whether it is held, by
// whom, and what happened to it since.
import { ApiError, Client, EventStream, lockPath } from './api.js';
import { $, el, sync } from './dom.js';
import { factsOf, timeEl } from './format.js';
import { eventItem } from './render.js';
import { ENDS } from './session.js';
import { page } from './state.js';
import { clearError, setConn, showError } from './status.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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

export function renderLookup() {
  const l = page.lookup;
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

export async function startLookup(raw) {
  clearError();
  const uuid = raw.trim();
  if (!UUID.test(uuid)) {
    showError(new ApiError(0, { title: 'Not a UUID', detail: 'a lock UUID has 32 hex digits as 8-4-4-4-12, e.g. 180da65c-cf80-4997-8574-0c0801817d6f' }));
    return;
  }
  if (page.lookup) page.lookup.close();
  page.lookup = new Lookup(uuid);
  renderLookup();
  try {
    await page.lookup.start();
  } catch (err) {
    showError(err);
  }
}

export function stopLookup() {
  if (page.lookup) page.lookup.close();
  page.lookup = null;
  renderLookup();
  setConn('idle', 'Not connected');
  $('lookup-input').focus();
}
