// The page's three ways of telling the visitor how things stand: the
// connection badge in the top bar, the error banner, and the toast that
// reports what an action did. Every view reports through these, so they
// look and behave the same whichever view is open.
import { ApiError } from './api.js';
import { $ } from './dom.js';

export function setConn(state, text, title) {
  const c = $('conn');
  c.dataset.state = state;
  $('conn-text').textContent = text;
  if (title) c.title = title; else c.removeAttribute('title');
}

export function showError(err) {
  const title = err instanceof ApiError ? err.title : 'Something went wrong';
  const detail = err instanceof ApiError ? err.detail : String(err && err.message || err);
  $('alert-title').textContent = title;
  $('alert-detail').textContent = detail;
  $('alert').hidden = false;
}

export function clearError() {
  $('alert').hidden = true;
}

let toastTimer = 0;
export function toast(text, kind) {
  const t = $('toast');
  t.textContent = text;
  t.dataset.kind = kind || 'ok';
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 6000);
}
