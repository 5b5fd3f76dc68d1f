// The Locklock dashboard (API.md §11), the module index.html loads: it
// signs in with a key (kept in session storage), switches between the
// namespace view and the one-lock view, and wires the page's controls.
// Everything a lock's taker wrote — names, holders, metadata — reaches the
// page through textContent and text nodes only, never as markup; the
// page's CSP refuses HTML sinks outright.
//
// The other modules, each with one job: dom.js (building elements, keyed
// lists), format.js (how fields read), state.js (what the page shows),
// status.js (connection badge, errors, toasts), session.js (the namespace
// view's data), render.js (drawing it), force.js (the force-release
// dialog), lookup.js (the one-lock view); api.js talks to the server.
import { ApiError } from './api.js';
import { $ } from './dom.js';
import { wireForceDialog } from './force.js';
import { updateCountdown } from './format.js';
import { renderLookup, startLookup, stopLookup } from './lookup.js';
import { render, renderNow } from './render.js';
import { Session } from './session.js';
import { filter, page } from './state.js';
import { clearError, setConn, showError, toast } from './status.js';

const KEY_STORAGE = 'locklock.apiKey';

// ---- switching between the views ----

function showView() {
  const { session } = page;
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
  if (page.lookup) {
    page.lookup.close();
    page.lookup = null;
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
  page.session = s;
  showView();
  renderNow();
  toast(`Connected to namespace ${s.who.namespace}.`);
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  if (page.session) page.session.close();
  page.session = null;
  for (const id of ['locks-body', 'sems-list', 'events-list']) $(id).replaceChildren();
  document.body.classList.remove('is-operator');
  clearError();
  setConn('idle', 'Not connected');
  showView();
  $('key-input').focus();
  toast('The key is forgotten.', 'info');
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
  wireForceDialog(render);
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
