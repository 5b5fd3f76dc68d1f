// The force-release dialog (API.md §11): it shows what is about to end,
// sends the DELETE with Locklock-Force, and reports what happened. It is
// the page's only write to the server, so it lives apart from the views
// that open it.
import { ApiError, lockPath, slotPath } from './api.js';
import { $, el } from './dom.js';
import { factsOf, seconds } from './format.js';
import { page } from './state.js';
import { toast } from './status.js';

// forceTarget is what the open dialog would release, and the button that
// opened it.
let forceTarget = null;

// askForce opens the dialog for target ({lock} or {slot}); opener gets the
// focus back when it closes.
export function askForce(target, opener) {
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

async function confirmForce(rerender) {
  const t = forceTarget;
  if (!t || !page.session) return;
  const s = page.session;
  const x = t.lock || t.slot;
  const path = t.lock ? lockPath(x.kind, x.name) : slotPath(x.kind, x.name, x.slot);
  const confirm = $('force-confirm');
  confirm.disabled = true;
  confirm.textContent = 'Releasing…';
  try {
    const out = await s.client.request('DELETE', path, { headers: { 'Locklock-Force': 'true' } });
    const ended = out.lock || out.slot;
    s.apply(t.lock ? { type: 'revoked', lock: ended } : { type: 'revoked', slot: ended });
    rerender();
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

// wireForceDialog hooks up the dialog's buttons; rerender draws the
// namespace view again after a release. It is passed in rather than
// imported: render.js, whose rows open this dialog, imports this module.
export function wireForceDialog(rerender) {
  $('force-cancel').addEventListener('click', () => $('force-dialog').close());
  $('force-confirm').addEventListener('click', () => confirmForce(rerender));
  $('force-dialog').addEventListener('close', () => {
    const t = forceTarget;
    forceTarget = null;
    // Back to the button that opened it; if its row is gone, to the page.
    if (t && t.opener && t.opener.isConnected) t.opener.focus();
    else if (t) $('main').focus();
  });
}
