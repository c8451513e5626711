// DOM helpers shared by the views. Every piece of text a user or the server supplies goes
// in through textContent: the page never parses HTML it did not ship (the CSP's trusted
// types make innerHTML throw anyway).

/** The element with this id. */
export const byId = (id) => document.getElementById(id);

/**
 * An element: `h('button', { class: 'x', type: 'button', 'aria-label': 'Close', onclick }, 'text', child)`.
 * Keys starting with `on` become listeners, `class`/`text`/`hidden`/`value`/`checked`/`disabled`
 * are set as properties, anything else as an attribute (skipped when null or false).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'hidden' || key === 'value' || key === 'checked' || key === 'disabled') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** "14:05" today, "3 Mar" before. */
export function shortTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFormat.format(d) : dateFormat.format(d);
}

/** A timestamp for a title or a screen reader: "3 Mar 2026, 14:05". */
export function longTime(iso) {
  return iso ? fullFormat.format(new Date(iso)) : '';
}

/** A `<time>` element showing `shortTime`, with the full date for hover and assistive tech. */
export function timeEl(iso, className = 'time') {
  return h('time', { class: className, datetime: iso, title: longTime(iso) }, shortTime(iso));
}

/** A random v4 UUID; `crypto.randomUUID` exists only on secure origins, this works on plain http too. */
export function uuid() {
  if (window.isSecureContext && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

let toastTimer = 0;

/** Shows a short message in the page's alert region (read out by screen readers). */
export function toast(message) {
  const el = byId('toast');
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

/** The text of an error for a person: the server's message when it sent one. */
export function errorText(err) {
  const message = err?.body?.message ?? err?.message;
  if (Array.isArray(message)) return message.join('; ');
  return message ? String(message) : 'Something went wrong';
}

/**
 * A round avatar with the name's first letter and, for a person, a presence dot that
 * `paintPresence` keeps current. Decorative: callers say the presence in words too.
 */
export function avatar(name, userId = null, status = null) {
  return h('span', { class: 'avatar', 'aria-hidden': 'true' },
    (name || '?').slice(0, 1).toUpperCase(),
    userId ? h('span', { class: status === 'online' ? 'dot online' : 'dot', 'data-presence': userId }) : null);
}

/** Paints every presence dot of `userId` (`data-presence`) with `status`. */
export function paintPresence(root, userId, status) {
  for (const dot of root.querySelectorAll(`[data-presence="${CSS.escape(userId)}"]`)) {
    dot.classList.toggle('online', status === 'online');
  }
}

/** Runs `fn` at most once per `ms`, the last call winning. */
export function debounce(fn, ms) {
  let timer = 0;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/**
 * Shows a modal confirmation and resolves with the choice. Uses the page's
 * `<dialog id="confirm-dialog">`, so focus is trapped and Escape cancels.
 */
export function confirmAction(question, action) {
  const dialog = byId('confirm-dialog');
  byId('confirm-text').textContent = question;
  byId('confirm-yes').textContent = action;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

/**
 * Wires a WAI-ARIA tab list: a click, or the arrow, Home and End keys, select a tab and
 * show its panel. `onChange(tabId)` follows each selection. Returns `select(tabId)`.
 */
export function tabs(list, onChange = () => {}) {
  const all = [...list.querySelectorAll('[role=tab]')];
  const select = (tab, focus = false) => {
    for (const t of all) {
      const on = t === tab;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
      byId(t.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) tab.focus();
    onChange(tab.id);
  };
  for (const t of all) t.addEventListener('click', () => select(t));
  list.addEventListener('keydown', (e) => {
    const i = all.indexOf(document.activeElement);
    if (i < 0) return;
    const next = { ArrowRight: all[(i + 1) % all.length], ArrowLeft: all[(i - 1 + all.length) % all.length], Home: all[0], End: all.at(-1) }[e.key];
    if (!next) return;
    e.preventDefault();
    select(next, true);
  });
  return (id) => select(byId(id));
}
