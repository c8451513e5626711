// Everything about other people: finding them, friend requests (send, accept, decline,
// cancel), friends, blocks, starting a direct chat, creating a group, and a group's
// members (add, remove, leave). docs/api-social.md has the rules the server applies.

import { query } from './api.js';
import { avatar, byId, confirmAction, debounce, errorText, h, tabs, toast } from './dom.js';

const SEARCH_LIMIT = 20;
const LIST_LIMIT = 100;

const RELATIONSHIP = {
  friends: 'Friend',
  pending_incoming: 'Wants to be your friend',
  pending_outgoing: 'Request sent',
  blocked: 'Blocked',
};

/** Users whose name contains `q`, each with `relationship` to the caller. */
function search(api, q, includeBlocked = false) {
  return api.get(query('/friendships/search', { search: q, limit: SEARCH_LIMIT, include_blocked: includeBlocked || null })).then((r) => r.data);
}

/** A row of a people list: avatar with presence, name, a line of detail, and buttons. */
function personRow(chats, user, detail, buttons) {
  const status = chats.presence.get(user.user_id) ?? user.status;
  return h('li', { class: 'person', 'data-user-id': user.user_id },
    avatar(user.username, user.user_id, status),
    h('span', { class: 'person-main' },
      h('span', { class: 'person-name' }, user.username,
        h('span', { class: 'visually-hidden' }, status === 'online' ? ', online' : ', offline')),
      detail ? h('span', { class: 'person-detail' }, detail) : null),
    h('span', { class: 'person-actions' }, buttons));
}

function emptyRow(text) {
  return h('li', { class: 'empty' }, text);
}

/** A button that runs `action`, disabled while it runs; failures are shown as a toast. */
function actionButton(label, action, { kind = '', name = null } = {}) {
  const button = h('button', { type: 'button', class: `small ${kind}`.trim(), 'aria-label': name });
  button.textContent = label;
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await action();
    } catch (err) {
      toast(errorText(err));
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

export class PeopleView {
  constructor({ api, chats, onOpenConversation }) {
    this.api = api;
    this.chats = chats;
    this.onOpen = onOpenConversation;
    this.dialog = byId('people-dialog');
    this.input = byId('people-search');
    this.badge = byId('requests-count');
    this.current = 'people-tab-find';
    this.select = tabs(this.dialog.querySelector('[role=tablist]'), (id) => {
      this.current = id;
      this.refresh();
    });
    this.input.addEventListener('input', debounce(() => this.#find(), 250));
    byId('people-open').addEventListener('click', () => this.open('people-tab-find'));
    byId('new-chat').addEventListener('click', () => this.open('people-tab-find'));
  }

  open(tab) {
    if (!this.dialog.open) this.dialog.showModal();
    this.select(tab);
    if (tab === 'people-tab-find') this.input.focus();
  }

  /** Reloads the tab on screen, and the count of requests waiting for an answer. */
  refresh() {
    this.countRequests();
    if (!this.dialog.open) return;
    const load = {
      'people-tab-find': () => this.#find(),
      'people-tab-friends': () => this.#friends(),
      'people-tab-requests': () => this.#requests(),
      'people-tab-blocked': () => this.#blocked(),
    }[this.current];
    load().catch((err) => toast(errorText(err)));
  }

  async countRequests() {
    try {
      const incoming = await this.api.get(query('/friendships/requests', { direction: 'incoming', limit: LIST_LIMIT }));
      this.badge.hidden = incoming.length === 0;
      this.badge.textContent = String(incoming.length);
      byId('people-open').setAttribute('aria-label', incoming.length
        ? `People and friend requests, ${incoming.length} waiting`
        : 'People and friend requests');
    } catch {
      // The badge keeps its count until the next refresh.
    }
  }

  async #message(userId) {
    const id = await this.chats.startDirect(userId);
    this.dialog.close();
    this.onOpen(id);
  }

  async #act(action) {
    await action();
    this.refresh();
  }

  async #block(user) {
    if (!(await confirmAction(`Block ${user.username}? They will not be able to message you or add you to groups.`, 'Block'))) return;
    await this.#act(() => this.api.post(`/friendships/block/${user.user_id}`));
  }

  async #find() {
    const q = this.input.value.trim();
    const list = byId('people-results');
    if (!q) {
      list.replaceChildren(emptyRow('Type a name to find people.'));
      return;
    }
    const users = await search(this.api, q);
    if (q !== this.input.value.trim()) return;
    list.replaceChildren(...(users.length ? users.map((u) => this.#searchRow(u)) : [emptyRow('No one found.')]));
  }

  #searchRow(u) {
    const id = u.user_id;
    const buttons = [actionButton('Message', () => this.#message(id), { kind: 'primary', name: `Message ${u.username}` })];
    switch (u.relationship) {
      case 'none':
        buttons.push(actionButton('Add friend', () => this.#act(() => this.api.post('/friendships/request', { friendId: id })), { name: `Add ${u.username} as a friend` }));
        break;
      case 'pending_incoming':
        buttons.push(
          actionButton('Accept', () => this.#act(() => this.api.post(`/friendships/accept/${id}`)), { name: `Accept ${u.username}'s friend request` }),
          actionButton('Decline', () => this.#act(() => this.api.post(`/friendships/decline/${id}`)), { name: `Decline ${u.username}'s friend request` }),
        );
        break;
      case 'pending_outgoing':
        buttons.push(actionButton('Cancel request', () => this.#act(() => this.api.delete(`/friendships/request/${id}`)), { name: `Cancel the friend request to ${u.username}` }));
        break;
      default:
        break;
    }
    buttons.push(actionButton('Block', () => this.#block(u), { kind: 'danger', name: `Block ${u.username}` }));
    return personRow(this.chats, u, RELATIONSHIP[u.relationship] ?? null, buttons);
  }

  async #friends() {
    const friends = await this.api.get(query('/friendships', { limit: LIST_LIMIT }));
    byId('friends-list').replaceChildren(...(friends.length
      ? friends.map((f) => personRow(this.chats, f.user, null, [
        actionButton('Message', () => this.#message(f.user.user_id), { kind: 'primary', name: `Message ${f.user.username}` }),
        actionButton('Unfriend', () => this.#act(() => this.api.delete(`/friendships/${f.user.user_id}`)), { name: `Unfriend ${f.user.username}` }),
        actionButton('Block', () => this.#block(f.user), { kind: 'danger', name: `Block ${f.user.username}` }),
      ]))
      : [emptyRow('No friends yet. Find people and add them.')]));
  }

  async #requests() {
    const [incoming, outgoing] = await Promise.all([
      this.api.get(query('/friendships/requests', { direction: 'incoming', limit: LIST_LIMIT })),
      this.api.get(query('/friendships/requests', { direction: 'outgoing', limit: LIST_LIMIT })),
    ]);
    byId('requests-incoming').replaceChildren(...(incoming.length
      ? incoming.map((r) => personRow(this.chats, r.user, 'Wants to be your friend', [
        actionButton('Accept', () => this.#act(() => this.api.post(`/friendships/accept/${r.user.user_id}`)), { kind: 'primary', name: `Accept ${r.user.username}'s friend request` }),
        actionButton('Decline', () => this.#act(() => this.api.post(`/friendships/decline/${r.user.user_id}`)), { name: `Decline ${r.user.username}'s friend request` }),
        actionButton('Block', () => this.#block(r.user), { kind: 'danger', name: `Block ${r.user.username}` }),
      ]))
      : [emptyRow('No requests waiting.')]));
    byId('requests-outgoing').replaceChildren(...(outgoing.length
      ? outgoing.map((r) => personRow(this.chats, r.user, 'Waiting for an answer', [
        actionButton('Cancel', () => this.#act(() => this.api.delete(`/friendships/request/${r.user.user_id}`)), { name: `Cancel the friend request to ${r.user.username}` }),
      ]))
      : [emptyRow('No requests sent.')]));
  }

  async #blocked() {
    const blocked = await this.api.get(query('/friendships/blocked', { limit: LIST_LIMIT }));
    byId('blocked-list').replaceChildren(...(blocked.length
      ? blocked.map((u) => personRow(this.chats, u, 'Blocked', [
        actionButton('Unblock', () => this.#act(() => this.api.delete(`/friendships/unblock/${u.user_id}`)), { name: `Unblock ${u.username}` }),
      ]))
      : [emptyRow('You have not blocked anyone.')]));
  }
}

/** The "New group" dialog: a name and the people to start it with. */
export class GroupView {
  #picked = new Map();

  constructor({ api, chats, onOpenConversation }) {
    this.api = api;
    this.chats = chats;
    this.onOpen = onOpenConversation;
    this.dialog = byId('group-dialog');
    this.name = byId('group-name');
    this.input = byId('group-search');
    this.error = byId('group-error');
    this.input.addEventListener('input', debounce(() => this.#find().catch((err) => toast(errorText(err))), 250));
    byId('new-group').addEventListener('click', () => this.open());
    byId('group-form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.#create();
    });
  }

  open() {
    this.#picked.clear();
    this.name.value = '';
    this.input.value = '';
    this.error.textContent = '';
    byId('group-results').replaceChildren();
    this.#renderPicked();
    this.dialog.showModal();
    this.name.focus();
  }

  async #find() {
    const q = this.input.value.trim();
    const list = byId('group-results');
    if (!q) {
      list.replaceChildren();
      return;
    }
    const users = await search(this.api, q);
    if (q !== this.input.value.trim()) return;
    list.replaceChildren(...(users.length
      ? users.map((u) => personRow(this.chats, u, null, [
        this.#picked.has(u.user_id)
          ? h('span', { class: 'person-detail' }, 'Added')
          : actionButton('Add', () => {
            this.#picked.set(u.user_id, u);
            this.#renderPicked();
            return this.#find();
          }, { name: `Add ${u.username} to the group` }),
      ]))
      : [emptyRow('No one found.')]));
  }

  #renderPicked() {
    const list = byId('group-picked');
    list.replaceChildren(...(this.#picked.size
      ? [...this.#picked.values()].map((u) => h('li', { class: 'chip' }, u.username,
        h('button', {
          type: 'button',
          class: 'icon-button',
          'aria-label': `Remove ${u.username}`,
          onclick: () => {
            this.#picked.delete(u.user_id);
            this.#renderPicked();
            this.#find().catch(() => {});
            this.input.focus();
          },
        }, '×')))
      : [h('li', { class: 'empty' }, 'Just you so far.')]));
  }

  async #create() {
    this.error.textContent = '';
    const name = this.name.value.trim();
    if (!name) {
      this.error.textContent = 'Give the group a name.';
      this.name.focus();
      return;
    }
    const button = this.dialog.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const id = await this.chats.createGroup(name, [...this.#picked.keys()]);
      this.dialog.close();
      this.onOpen(id);
    } catch (err) {
      this.error.textContent = errorText(err);
    } finally {
      button.disabled = false;
    }
  }
}

/** The members of the open group: who is in it, adding people, removing them, leaving. */
export class MembersView {
  constructor({ api, chats }) {
    this.api = api;
    this.chats = chats;
    this.id = null;
    this.dialog = byId('members-dialog');
    this.input = byId('members-search');
    this.error = byId('members-error');
    this.input.addEventListener('input', debounce(() => this.#find().catch((err) => toast(errorText(err))), 250));
    chats.addEventListener('thread', (e) => {
      if (this.dialog.open && e.detail === this.id) this.#render();
    });
    chats.addEventListener('closed', (e) => {
      if (e.detail === this.id && this.dialog.open) this.dialog.close();
    });
    this.dialog.addEventListener('close', () => {
      this.id = null;
    });
  }

  open(id) {
    this.id = id;
    this.input.value = '';
    this.error.textContent = '';
    byId('members-results').replaceChildren();
    this.#render();
    this.dialog.showModal();
  }

  #render() {
    const c = this.chats.get(this.id);
    if (!c) return;
    byId('members-title').textContent = `Members of ${this.chats.title(c)}`;
    const me = this.chats.participant(c, this.chats.me);
    const canRemove = (p) => p.user_id !== this.chats.me && (me?.role === 'owner' || (me?.role === 'admin' && p.role !== 'owner'));
    const rows = [...c.view.participants]
      .sort((a, b) => a.username.localeCompare(b.username))
      .map((p) => {
        const you = p.user_id === this.chats.me;
        const buttons = [];
        if (you) buttons.push(actionButton('Leave', () => this.#leave(c), { kind: 'danger', name: 'Leave the group' }));
        else if (canRemove(p)) buttons.push(actionButton('Remove', () => this.#remove(c, p), { kind: 'danger', name: `Remove ${p.username}` }));
        const detail = [you ? 'You' : null, p.role !== 'member' ? p.role : null].filter(Boolean).join(', ');
        return personRow(this.chats, p, detail || null, buttons);
      });
    byId('members-list').replaceChildren(...rows);
  }

  async #find() {
    const q = this.input.value.trim();
    const list = byId('members-results');
    const c = this.chats.get(this.id);
    if (!q || !c) {
      list.replaceChildren();
      return;
    }
    const users = await search(this.api, q);
    if (q !== this.input.value.trim()) return;
    const members = new Set(c.view.participants.map((p) => p.user_id));
    const candidates = users.filter((u) => !members.has(u.user_id));
    list.replaceChildren(...(candidates.length
      ? candidates.map((u) => personRow(this.chats, u, null, [
        actionButton('Add', async () => {
          this.error.textContent = '';
          await this.chats.addMembers(this.id, [u.user_id]);
          await this.#find();
        }, { kind: 'primary', name: `Add ${u.username} to the group` }),
      ]))
      : [emptyRow('No one to add.')]));
  }

  async #remove(c, p) {
    if (!(await confirmAction(`Remove ${p.username} from ${this.chats.title(c)}?`, 'Remove'))) return;
    await this.chats.removeMember(c.id, p.user_id);
  }

  async #leave(c) {
    if (!(await confirmAction(`Leave ${this.chats.title(c)}? You will no longer get its messages.`, 'Leave'))) return;
    await this.chats.removeMember(c.id, this.chats.me);
    this.dialog.close();
  }
}
