// What the page is showing, in one place that every part reads: the
// namespace view (a Session, with a key) or the one-lock view (a Lookup,
// without), and the filter of the namespace view. A module's own `let`
// cannot be set from another module, so the views live on one object.

export const page = {
  session: null, // the namespace view, with a key
  lookup: null, // the one-lock view, without
};

export const filter = { kind: '', prefix: '' };

// clientNow is the server's clock as the open view's client estimates it,
// so that countdowns agree with the server's expiry times.
export function clientNow() {
  const v = page.session || page.lookup;
  return v ? v.client.now() : Date.now();
}

// matches tells whether the filter lets a lock or semaphore through.
export function matches(kind, name) {
  if (filter.kind && kind !== filter.kind) return false;
  if (!filter.prefix) return true;
  // UUIDs are stored in lower case and matched without case, as the API does.
  return kind === 'uuid' ? name.startsWith(filter.prefix.toLowerCase()) : name.startsWith(filter.prefix);
}
