// The open conversation: its messages in seq order with paging back through history, the
// composer, who is typing, and on each of the user's own messages its receipt (sent,
// delivered, read) and edit / delete.

import { byId, confirmAction, errorText, fill, h, longTime, timeEl, toast } from './dom.js';

const RECEIPT = { sent: 'Sent', delivered: 'Delivered', read: 'Read' };
/** Within this many pixels of the bottom, new messages keep the view scrolled down. */
const STICK_PX = 80;

export class ThreadView {
  #items = new Map();

  constructor(chats, { onMembers }) {
    this.chats = chats;
    this.id = null;
    this.root = byId('thread');
    this.title = byId('thread-title');
    this.sub = byId('thread-sub');
    this.list = byId('messages');
    this.scroller = byId('scroller');
    this.older = byId('load-older');
    this.typing = byId('typing');
    this.input = byId('composer-input');
    this.members = byId('members-open');

    chats.addEventListener('thread', (e) => {
      if (e.detail === this.id) this.render();
    });
    chats.addEventListener('typing', (e) => {
      if (e.detail === this.id) this.#renderTyping();
    });
    chats.addEventListener('presence', () => {
      if (this.id) this.#renderHead();
    });
    this.members.addEventListener('click', () => onMembers(this.id));
    this.older.addEventListener('click', () => this.#loadOlder());

    byId('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      const content = this.input.value.trim();
      if (!content || !this.id) return;
      this.chats.send(this.id, content);
      this.input.value = '';
      this.#grow();
      this.#scrollDown();
    });
    this.input.addEventListener('keydown', (e) => {
      // Enter sends, Shift+Enter starts a new line; not while an input method composes.
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        byId('composer').requestSubmit();
      }
    });
    this.input.addEventListener('input', () => {
      this.#grow();
      if (this.id) this.chats.setTyping(this.id, this.input.value.trim().length > 0);
    });
  }

  /** Shows conversation `id` (already opened in `chats`). */
  show(id) {
    if (this.id !== id) {
      this.id = id;
      this.#items.clear();
      this.list.replaceChildren();
      this.input.value = '';
      this.#grow();
    }
    this.root.hidden = false;
    this.render();
    this.#renderTyping();
    this.#scrollDown();
  }

  hide() {
    this.id = null;
    this.root.hidden = true;
    this.#items.clear();
    this.list.replaceChildren();
  }

  focusComposer() {
    this.input.focus();
  }

  render() {
    const c = this.chats.get(this.id);
    if (!c) return;
    this.#renderHead();
    this.older.hidden = !c.hasOlder;
    const stick = this.#nearBottom();
    const keep = new Set();
    let previous = null;
    for (const m of this.chats.messages(this.id)) {
      const key = this.#key(m);
      let li = this.#items.get(key);
      if (!li) {
        li = h('li');
        this.#items.set(key, li);
      }
      this.#paint(li, c, m);
      const slot = previous ? previous.nextSibling : this.list.firstChild;
      if (slot !== li) this.list.insertBefore(li, slot);
      previous = li;
      keep.add(key);
    }
    for (const [key, li] of this.#items) {
      if (keep.has(key)) continue;
      li.remove();
      this.#items.delete(key);
    }
    if (stick) this.#scrollDown();
  }

  #renderHead() {
    const c = this.chats.get(this.id);
    if (!c) return;
    this.title.textContent = this.chats.title(c);
    this.members.hidden = !c.view.is_group;
    if (c.view.is_group) {
      const n = c.view.participants.length;
      const online = c.view.participants.filter((p) => p.user_id !== this.chats.me && this.chats.presence.get(p.user_id) === 'online').length;
      this.sub.textContent = `${n} member${n === 1 ? '' : 's'}${online ? `, ${online} online` : ''}`;
    } else {
      const other = this.chats.other(c);
      this.sub.textContent = other ? (this.chats.presence.get(other.user_id) === 'online' ? 'Online' : 'Offline') : '';
    }
  }

  #renderTyping() {
    const names = this.chats.typists(this.id);
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = 'Several people are typing…';
    this.typing.textContent = text;
  }

  /**
   * One key per message across its life on this page: a send keeps the element it had
   * while pending once the server has stored it.
   */
  #key(m) {
    if (m.pending) return `c:${m.client_msg_id}`;
    if (m.sender_id === this.chats.me && m.client_msg_id) return `c:${m.client_msg_id}`;
    return `m:${m.message_id}`;
  }

  #paint(li, c, m) {
    if (li.dataset.editing) return;
    const mine = m.sender_id === this.chats.me;
    const receipt = mine && !m.pending ? this.chats.receipt(c, m) : null;
    const sig = JSON.stringify([m.message_id, m.content, m.is_edited, m.updated_at, receipt, m.pending, m.failed]);
    if (li.dataset.sig === sig) return;
    li.dataset.sig = sig;
    li.className = `msg ${mine ? 'mine' : 'theirs'}${m.pending ? ' pending' : ''}${m.failed ? ' failed' : ''}`;
    if (m.message_id) {
      li.dataset.messageId = m.message_id;
      li.dataset.seq = m.seq;
    }
    const sender = mine ? 'You' : this.chats.participant(c, m.sender_id)?.username ?? 'Former member';
    const meta = h('p', { class: 'meta' }, timeEl(m.created_at));
    if (m.is_edited) meta.append(' · ', h('span', { title: longTime(m.updated_at) }, 'edited'));
    if (receipt) meta.append(' · ', h('span', { class: 'receipt', 'data-status': receipt }, RECEIPT[receipt]));
    if (m.pending && !m.failed) meta.append(' · ', h('span', { class: 'receipt', 'data-status': 'pending' }, 'Sending…'));
    const actions = [];
    if (m.failed) {
      meta.append(' · ', h('span', { class: 'receipt', 'data-status': 'failed' }, `Not sent: ${m.failed}`));
      actions.push(
        h('button', { type: 'button', class: 'link', onclick: () => this.chats.retrySend(m.client_msg_id) }, 'Retry'),
        h('button', { type: 'button', class: 'link', onclick: () => this.chats.discardSend(m.client_msg_id) }, 'Discard'),
      );
    } else if (mine && !m.pending) {
      actions.push(
        h('button', { type: 'button', class: 'link', 'aria-label': 'Edit message', onclick: () => this.#edit(li, m) }, 'Edit'),
        h('button', { type: 'button', class: 'link', 'aria-label': 'Delete message', onclick: () => this.#delete(m) }, 'Delete'),
      );
    }
    fill(li,
      c.view.is_group && !mine ? h('p', { class: 'sender' }, sender) : h('span', { class: 'visually-hidden' }, `${sender}: `),
      h('p', { class: 'body' }, m.content),
      meta,
      actions.length ? h('div', { class: 'actions' }, actions) : null);
  }

  #edit(li, m) {
    li.dataset.editing = '1';
    const field = h('textarea', { class: 'edit', rows: 2, maxlength: 4000, 'aria-label': 'Edit message', value: m.content });
    const done = () => {
      delete li.dataset.editing;
      delete li.dataset.sig;
      this.render();
      li.querySelector('button')?.focus();
    };
    const form = h('form', { class: 'edit-form' },
      field,
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'small', onclick: done }, 'Cancel'),
        h('button', { type: 'submit', class: 'small primary' }, 'Save')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const content = field.value.trim();
      if (!content || content === m.content) {
        done();
        return;
      }
      try {
        await this.chats.edit(m.message_id, content);
        done();
      } catch (err) {
        toast(`Not saved: ${errorText(err)}`);
      }
    });
    field.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        done();
      } else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    li.querySelector('.body').replaceWith(form);
    li.querySelector('.actions')?.remove();
    field.focus();
    field.setSelectionRange(field.value.length, field.value.length);
  }

  async #delete(m) {
    if (!(await confirmAction('Delete this message for everyone?', 'Delete'))) return;
    try {
      await this.chats.remove(m.message_id);
      this.input.focus();
    } catch (err) {
      toast(`Not deleted: ${errorText(err)}`);
    }
  }

  async #loadOlder() {
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    this.older.disabled = true;
    try {
      await this.chats.loadOlder(this.id);
      // Older messages go above: keep the ones being read where they were.
      this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
    } catch (err) {
      toast(`Could not load older messages: ${errorText(err)}`);
    } finally {
      this.older.disabled = false;
    }
  }

  #nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < STICK_PX;
  }

  #scrollDown() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  #grow() {
    // Grows with its text up to the CSS max-height, then scrolls.
    this.input.style.height = 'auto';
    this.input.style.height = `${this.input.scrollHeight}px`;
  }
}
