// Drawing the namespace view: the locks table, a card per semaphore with
// its slots, the events log and the summary counts, from the Session in
// page.session. Rows are made once and updated in place (dom.js's sync),
// and a burst of events is drawn once (render coalesces them).
import { compareTokens } from './api.js';
import { $, el, fill, sync } from './dom.js';
import { askForce } from './force.js';
import {
  expiresEl, holderCell, kindBadge, nameEl, protectedEl, seconds, timeEl, when,
} from './format.js';
import { matches, page } from './state.js';


function inUse(sem) {
  let n = 0;
  for (const s of sem.slots.values()) n += s.weight;
  return n;
}

let renderQueued = false;
// render coalesces the changes of a burst of events into one update. It
// uses a timer rather than requestAnimationFrame, which stops in a tab
// that is not shown, so the page is current when it is shown again.
export function render() {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(() => {
    renderQueued = false;
    renderNow();
  }, 16);
}

export function renderNow() {
  if (!page.session) return;
  const s = page.session;
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
      const cur = page.session && page.session.locks.get(key);
      if (cur) askForce({ lock: cur }, e.currentTarget);
    },
  }, 'Force release'));
  updateLockRow(tr, l);
  return tr;
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
      const sem = page.session && page.session.sems.get(semKey);
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

// eventItem is one entry of an events log: the namespace's or, in the
// one-lock view, the lock's.
export function eventItem(e) {
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
