// Building and updating the page's elements. Everything a lock's taker
// wrote reaches the page through el's text nodes and textContent, never as
// markup (the CSP refuses HTML sinks), and lists are updated in place by
// key, so that focus and selection survive a stream of updates.

export const $ = (id) => document.getElementById(id);

// el builds an element; strings among children become text nodes.
export function el(tag, props, ...children) {
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

// sync makes parent's children show items, in order: a child is kept (and
// updated) for each key it had before, made for each new one, and removed
// for each key that is gone.
export function sync(parent, items, keyOf, make, update) {
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
export function fill(node, sig, ...children) {
  if (node.dataset.sig === sig) return;
  node.dataset.sig = sig;
  node.replaceChildren(...children.flat());
}
