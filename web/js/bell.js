// The notification bell, fed live by the `/notifications` namespace: its unread count, and
// a panel listing the newest notifications with what each one leads to (a conversation, a
// friend request to answer).

import { query } from './api.js';
import { byId, debounce, errorText, h, timeEl, toast } from './dom.js';

const SHOWN = 30;

export class Bell {
  #items = new Map();
  #count = 0;

  constructor({ api, live, chats, people, onOpenConversation }) {
    this.api = api;
    this.chats = chats;
    this.people = people;
    this.onOpen = onOpenConversation;
    this.button = byId('bell');
    this.badge = byId('bell-count');
    this.dialog = byId('notifications-dialog');
    this.list = byId('notifications-list');
    this.empty = byId('notifications-empty');
    // The server counts a collapsed message notification once, whatever its `count`: ask it.
    this.recount = debounce(() => this.#fetchCount(), 300);

    live.notes.on('connect', () => this.refresh());
    live.notes.on('notification', (n) => this.#receive(n));
    chats.addEventListener('read', (e) => this.#readConversation(e.detail));
    this.button.addEventListener('click', () => {
      this.#render();
      this.dialog.showModal();
    });
    byId('notifications-read-all').addEventListener('click', async () => {
      try {
        await api.post('/notifications/read-all');
        for (const n of this.#items.values()) n.is_read = true;
        this.#setCount(0);
        this.#render();
      } catch (err) {
        toast(errorText(err));
      }
    });
  }

  /** Refetches the newest notifications and the unread count (after every connect). */
  async refresh() {
    try {
      const [list, { count }] = await Promise.all([
        this.api.get(query('/notifications', { limit: SHOWN })),
        this.api.get('/notifications/unread-count'),
      ]);
      this.#items = new Map(list.map((n) => [n.notification_id, n]));
      this.#setCount(count);
      this.#render();
    } catch {
      // Kept as it was; the next connect refreshes again.
    }
  }

  #receive(n) {
    if (n.deleted_at) this.#items.delete(n.notification_id);
    else this.#items.set(n.notification_id, n);
    this.recount();
    this.#render();
    if (n.type === 'friend_request') this.people.refresh();
  }

  async #fetchCount() {
    try {
      this.#setCount((await this.api.get('/notifications/unread-count')).count);
    } catch {
      // The badge keeps its count until the next notification or connect.
    }
  }

  #setCount(count) {
    this.#count = count;
    this.badge.hidden = count === 0;
    this.badge.textContent = count > 99 ? '99+' : String(count);
    this.button.setAttribute('aria-label', count ? `Notifications, ${count} unread` : 'Notifications');
  }

  /** The conversation was read on this device: its message notification is read too. */
  async #readConversation(conversationId) {
    const unread = [...this.#items.values()].filter((n) => n.type === 'message' && !n.is_read && n.metadata?.conversation_id === conversationId);
    for (const n of unread) await this.#markRead(n).catch(() => {});
  }

  async #markRead(n) {
    if (n.is_read) return;
    const updated = await this.api.post(`/notifications/${n.notification_id}/read`);
    this.#items.set(n.notification_id, updated);
    this.recount();
    this.#render();
  }

  async #dismiss(n) {
    await this.api.delete(`/notifications/${n.notification_id}`);
    this.#items.delete(n.notification_id);
    this.recount();
    this.#render();
  }

  async #follow(n) {
    this.#markRead(n).catch(() => {});
    const conversationId = n.metadata?.conversation_id;
    if (conversationId) {
      this.dialog.close();
      this.onOpen(conversationId);
    } else if (n.type === 'friend_request') {
      this.dialog.close();
      this.people.open(n.metadata?.action === 'request' ? 'people-tab-requests' : 'people-tab-friends');
    }
  }

  async #answer(n, accept) {
    const sender = n.metadata?.sender_id;
    if (accept) {
      await this.api.post(`/friendships/accept/${sender}`);
      await this.#markRead(n);
    } else {
      // Declining deletes the request's notification on the server.
      await this.api.post(`/friendships/decline/${sender}`);
      this.#items.delete(n.notification_id);
      this.recount();
      this.#render();
    }
    this.people.refresh();
  }

  #render() {
    const items = [...this.#items.values()].sort((a, b) => Date.parse(b.updated_at) - Date.parse(a.updated_at));
    this.empty.hidden = items.length > 0;
    this.list.replaceChildren(...items.map((n) => this.#row(n)));
  }

  #row(n) {
    const act = (label, action, kind = '') => {
      const b = h('button', { type: 'button', class: `small ${kind}`.trim() }, label);
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          await action();
        } catch (err) {
          toast(errorText(err));
        } finally {
          b.disabled = false;
        }
      });
      return b;
    };
    const actions = [];
    if (n.type === 'friend_request' && n.metadata?.action === 'request' && !n.is_read) {
      actions.push(act('Accept', () => this.#answer(n, true), 'primary'), act('Decline', () => this.#answer(n, false)));
    }
    if (!n.is_read) actions.push(act('Mark read', () => this.#markRead(n)));
    actions.push(act('Dismiss', () => this.#dismiss(n)));
    const more = n.type === 'message' && n.count > 1 ? ` (${n.count} messages)` : '';
    return h('li', { class: `note${n.is_read ? '' : ' unread'}`, 'data-type': n.type, 'data-notification-id': n.notification_id },
      h('button', { type: 'button', class: 'note-main', onclick: () => this.#follow(n) },
        n.is_read ? null : h('span', { class: 'visually-hidden' }, 'Unread: '),
        h('strong', { class: 'note-title' }, n.title),
        h('span', { class: 'note-text' }, n.content + more),
        timeEl(n.updated_at)),
      h('div', { class: 'note-actions' }, actions));
  }
}
