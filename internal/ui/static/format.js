// How a lock's or slot's fields read on the page — times, countdowns,
// names, holders, metadata — the same in the tables, the semaphore cards,
// the events log, the one-lock view and the force-release dialog.
import { el } from './dom.js';
import { clientNow } from './state.js';

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
export function when(iso, ms) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  if (isToday(d)) return clock(d, ms);
  return `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${clock(d, ms)}`;
}

export function timeEl(iso, ms) {
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

export function seconds(n) {
  if (n < 120) return `${n} s`;
  if (n < 7200) return `${Math.round(n / 60)} min`;
  return `${Math.round(n / 3600)} h`;
}

export function kindBadge(kind) {
  return el('span', { class: `kind kind-${kind}`, title: kind === 'uuid' ? 'UUID name' : 'custom name' }, kind);
}

export function nameEl(kind, name) {
  return el('span', { class: 'name-cell' }, kindBadge(kind), el('span', { class: 'name mono', title: name }, name));
}

export function holderEl(holder) {
  return holder ? el('span', { class: 'holder', title: holder }, holder) : el('span', { class: 'muted' }, '—');
}

export function metadataEl(md) {
  const keys = Object.keys(md || {}).sort();
  if (keys.length === 0) return el('span', { class: 'muted' }, '—');
  return el('span', { class: 'meta' }, keys.map((k) => el('span', { class: 'meta-item', title: `${k}=${md[k]}` },
    el('span', { class: 'meta-k' }, k), el('span', { class: 'meta-v' }, md[k]))));
}

export function protectedEl(p) {
  return el('span', { class: p ? 'prot yes' : 'prot no' }, p ? 'Yes' : 'No');
}

// expiresEl is a live countdown: app.js's timer calls updateCountdown on
// every [data-expires] ten times a second.
export function expiresEl(iso) {
  const e = el('span', { class: 'countdown', dataset: { expires: iso } });
  updateCountdown(e);
  return e;
}

export function updateCountdown(e) {
  if (e.expiresMs === undefined) e.expiresMs = Date.parse(e.dataset.expires);
  const left = e.expiresMs - clientNow();
  const text = countdown(left);
  if (e.textContent !== text) e.textContent = text;
  e.classList.toggle('soon', left < 60000 && left > 10000);
  e.classList.toggle('due', left <= 10000);
}

// holderCell is the holder with the metadata under it: who, then what
// they said about it.
export function holderCell(x) {
  const out = [holderEl(x.holder)];
  if (x.metadata && Object.keys(x.metadata).length) out.push(metadataEl(x.metadata));
  return out;
}

// factsOf is a lock or slot as the rows of a <dl>: in the force-release
// dialog and the one-lock view.
export function factsOf(x, isSlot) {
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
