// The conversation list: most recently active first, each with its last message, unread
// count and, for a direct chat, the other person's presence.

import { avatar, byId, h, timeEl } from './dom.js';

export class Sidebar {
  #items = new Map();

  /** `onOpen(id)` runs when a conversation is picked. */
  constructor(chats, onOpen) {
    this.chats = chats;
    this.onOpen = onOpen;
    this.list = byId('conversation-list');
    this.empty = byId('conversations-empty');
    this.loaded = false;
    chats.addEventListener('list', () => {
      this.loaded = true;
      this.render();
    });
    chats.addEventListener('presence', () => this.render());
  }

  render() {
    const convs = this.chats.list();
    const keep = new Set();
    let previous = null;
    for (const c of convs) {
      let li = this.#items.get(c.id);
      if (!li) {
        const id = c.id;
        li = h('li', {}, h('button', { type: 'button', class: 'conv', onclick: () => this.onOpen(id) }));
        this.#items.set(id, li);
      }
      this.#paint(li.firstChild, c);
      // Elements already in place are not moved: moving one would take its focus away.
      const slot = previous ? previous.nextSibling : this.list.firstChild;
      if (slot !== li) this.list.insertBefore(li, slot);
      previous = li;
      keep.add(c.id);
    }
    for (const [id, li] of this.#items) {
      if (keep.has(id)) continue;
      li.remove();
      this.#items.delete(id);
    }
    this.empty.hidden = !this.loaded || convs.length > 0;
  }

  #paint(button, c) {
    const chats = this.chats;
    const title = chats.title(c);
    const other = chats.other(c);
    const online = other && chats.presence.get(other.user_id) === 'online';
    const last = c.view.last_message;
    let preview = 'No messages yet';
    if (last) {
      const who = last.sender_id === chats.me ? 'You: ' : c.view.is_group ? `${chats.participant(c, last.sender_id)?.username ?? 'Someone'}: ` : '';
      preview = who + last.content;
    }
    const sig = JSON.stringify([title, online, preview, c.unread, c.view.last_message_at, chats.openId === c.id]);
    if (button.dataset.sig === sig) return;
    button.dataset.sig = sig;
    button.dataset.conversationId = c.id;
    if (chats.openId === c.id) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
    button.replaceChildren(
      avatar(title, other?.user_id ?? null, online ? 'online' : 'offline'),
      h('span', { class: 'conv-main' },
        h('span', { class: 'conv-title' }, title,
          other ? h('span', { class: 'visually-hidden' }, online ? ', online' : ', offline') : null),
        h('span', { class: 'conv-last' }, preview)),
      h('span', { class: 'conv-meta' },
        timeEl(c.view.last_message_at ?? c.view.created_at),
        c.unread > 0 ? h('span', { class: 'badge', 'data-unread': c.unread }, String(c.unread), h('span', { class: 'visually-hidden' }, ' unread')) : null),
    );
  }
}
