// The signed-in user's conversations and the messages the page holds, kept right through
// live events, reconnects and replays (docs/events.md):
//
// - A message is held once, by message_id, and shown in seq order. Events that repeat one
//   (a retried send announced again, a node replaying after Redis came back, a live event
//   racing the `sync` that also returned it) change nothing.
// - Each open conversation knows the seq up to which it holds everything (`synced`). A live
//   message beyond the next seq means some were missed, and so does every reconnect: both
//   end in `sync`, which returns what came after.
// - Sends go through an outbox kept in localStorage and are retried with the same
//   client_msg_id until acknowledged, so a send survives a dropped connection or a reload
//   and is stored once (the server answers a repeated client_msg_id with the original).
// - Receipts: the page moves its own cursors (delivered when a message arrives, read while
//   its conversation is on screen) and shows, on each of the user's messages, what every
//   other participant's cursors say about it.

import { ApiError, query } from './api.js';
import { errorText, uuid } from './dom.js';
import { SignedOut } from './session.js';

/** Messages per page of history (the first page comes with the conversation). */
const PAGE = 50;
/** Conversations fetched for the list. */
const LIST_LIMIT = 100;
/** Conversations per `sync` (the server's limit). */
const SYNC_MAX = 100;
/** A live message past a gap waits this long for the missing ones before `sync` is asked. */
const GAP_WAIT_MS = 400;
/** Typing marks expire on the server without an event; shown ones are checked this often. */
const TYPING_CHECK_MS = 5_000;
/** A typist renews its mark this often (the server keeps one for 6 s)... */
const TYPING_RENEW_MS = 3_000;
/** ...and clears it after this long without a keystroke. */
const TYPING_IDLE_MS = 4_000;
/** An unacknowledged send is tried again this much later. */
const RESEND_MS = 3_000;

const RANK = { sent: 0, delivered: 1, read: 2 };

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends waiting for the server's acknowledgement, kept across reloads (per user). */
class Outbox {
  constructor(userId) {
    this.key = `chatty.outbox.${userId}`;
    try {
      this.list = JSON.parse(localStorage.getItem(this.key)) ?? [];
    } catch {
      this.list = [];
    }
  }

  items() {
    return this.list;
  }

  of(conversationId) {
    return this.list.filter((item) => item.conversation_id === conversationId);
  }

  get(clientMsgId) {
    return this.list.find((item) => item.client_msg_id === clientMsgId);
  }

  add(item) {
    this.list.push(item);
    this.#save();
  }

  /** Drops a send; true when it was there. */
  remove(clientMsgId) {
    const before = this.list.length;
    this.list = this.list.filter((item) => item.client_msg_id !== clientMsgId);
    if (this.list.length === before) return false;
    this.#save();
    return true;
  }

  /** Marks a send the server refused for good; it stays shown until retried or discarded. */
  fail(clientMsgId, reason) {
    const item = this.get(clientMsgId);
    if (!item) return;
    item.failed = reason;
    this.#save();
  }

  retry(clientMsgId) {
    const item = this.get(clientMsgId);
    if (!item) return;
    delete item.failed;
    this.#save();
  }

  #save() {
    try {
      localStorage.setItem(this.key, JSON.stringify(this.list));
    } catch {
      // Storage full or disabled: the sends still go out from memory.
    }
  }
}

/** A conversation as the page holds it. */
function conversation(view) {
  return {
    id: view.conversation_id,
    view,
    unread: 0,
    /** The server's last_seq when it last counted `unread` for us... */
    base: view.last_seq,
    /** ...and seqs past it that this page counted since. */
    counted: new Set(),
    /** message_id → message, once the conversation was opened; null before. */
    msgs: null,
    /** Seqs held or known deleted, to tell a gap from a deleted message. */
    seqs: new Set(),
    /** Every message up to this seq is held (or deleted). */
    synced: 0,
    hasOlder: false,
    deleted: new Set(),
    /** userId → username of those typing now. */
    typing: new Map(),
    ackTimer: 0,
    gapTimer: 0,
  };
}

export class Chats extends EventTarget {
  convs = new Map();
  openId = null;
  /** userId → 'online' | 'offline'. */
  presence = new Map();
  #fetching = new Map();
  #sending = new Set();
  #generation = 0;
  #typingSent = null;
  #typingIdle = 0;
  #typingCheck = 0;
  #dirty = { list: false, threads: new Set(), typing: new Set() };
  #flushQueued = false;

  constructor({ api, live, me }) {
    super();
    this.api = api;
    this.live = live;
    this.me = me.user_id;
    this.outbox = new Outbox(this.me);
    this.#listen();
    document.addEventListener('visibilitychange', () => {
      if (this.#visible() && this.openId) this.#scheduleAck(this.convs.get(this.openId));
    });
  }

  // --- reading -------------------------------------------------------------------------

  /** Conversations, most recently active first. */
  list() {
    const at = (c) => Date.parse(c.view.last_message_at ?? c.view.created_at) || 0;
    return [...this.convs.values()].sort((a, b) => at(b) - at(a));
  }

  get(id) {
    return this.convs.get(id) ?? null;
  }

  /** The other participant of a direct chat. */
  other(c) {
    return c.view.is_group ? null : c.view.participants.find((p) => p.user_id !== this.me) ?? null;
  }

  title(c) {
    if (c.view.is_group) return c.view.name || 'Group';
    return this.other(c)?.username ?? 'Only you';
  }

  participant(c, userId) {
    return c.view.participants.find((p) => p.user_id === userId) ?? null;
  }

  /** The messages to show: stored ones by seq, then this device's sends still on their way. */
  messages(id) {
    const c = this.convs.get(id);
    if (!c?.msgs) return [];
    const stored = [...c.msgs.values()].sort((a, b) => a.seq - b.seq);
    const pending = this.outbox.of(id).map((item) => ({
      pending: true,
      failed: item.failed ?? null,
      client_msg_id: item.client_msg_id,
      conversation_id: id,
      sender_id: this.me,
      content: item.content,
      created_at: item.created_at,
    }));
    return [...stored, ...pending];
  }

  /** `sent`, `delivered` or `read`: what every other participant's cursors say of `m`. */
  receipt(c, m) {
    const others = c.view.participants.filter((p) => p.user_id !== this.me);
    let seen = 'sent';
    if (others.length > 0) {
      if (others.every((p) => p.last_read_seq >= m.seq)) seen = 'read';
      else if (others.every((p) => p.last_delivered_seq >= m.seq)) seen = 'delivered';
    }
    return (RANK[m.status] ?? 0) > RANK[seen] ? m.status : seen;
  }

  /** Usernames typing in conversation `id` now. */
  typists(id) {
    return [...(this.convs.get(id)?.typing.values() ?? [])];
  }

  // --- actions -------------------------------------------------------------------------

  /** Fetches the conversation list; conversations gone from it are dropped. */
  async refreshList() {
    const rows = await this.api.get(query('/conversations', { limit: LIST_LIMIT }));
    const seen = new Set();
    for (const { unread_count: unread, ...view } of rows) {
      const c = this.#upsert(view);
      this.#rebase(c, view.last_seq, unread);
      seen.add(c.id);
    }
    if (rows.length < LIST_LIMIT) {
      for (const id of [...this.convs.keys()]) if (!seen.has(id)) this.#drop(id);
    }
    this.#touch('list');
  }

  /** Shows conversation `id`: loads its newest messages, joins its room (typing), reads it. */
  async open(id) {
    const previous = this.openId;
    this.openId = id;
    this.setTyping(previous, false);
    if (previous && previous !== id) {
      this.live.emit('leaveConversation', { conversationId: previous }).catch(() => {});
      this.convs.get(previous)?.typing.clear();
    }
    const c = this.convs.get(id) ?? (await this.#fetch(id));
    if (!c.msgs) await this.#loadLatest(c);
    if (this.openId !== id) return c;
    this.live.emit('joinConversation', { conversationId: id }).catch(() => {});
    this.#scheduleAck(c);
    this.#touch('thread', id);
    this.#touch('list');
    return c;
  }

  close() {
    const id = this.openId;
    if (!id) return;
    this.setTyping(id, false);
    this.openId = null;
    this.live.emit('leaveConversation', { conversationId: id }).catch(() => {});
    this.convs.get(id)?.typing.clear();
  }

  /** One more page of history above the oldest message held. */
  async loadOlder(id) {
    const c = this.convs.get(id);
    if (!c?.msgs || !c.hasOlder) return;
    const oldest = Math.min(...[...c.msgs.values()].map((m) => m.seq), c.synced + 1);
    const rows = await this.api.get(query(`/messages/conversation/${id}`, { before_seq: oldest, limit: PAGE }));
    for (const m of rows) this.#take(c, m, false);
    c.hasOlder = rows.length === PAGE && rows[0].seq > 1;
    this.#touch('thread', id);
  }

  send(id, content) {
    this.outbox.add({ client_msg_id: uuid(), conversation_id: id, content, created_at: new Date().toISOString() });
    this.setTyping(id, false);
    this.#touch('thread', id);
    this.#flushOutbox();
  }

  retrySend(clientMsgId) {
    const item = this.outbox.get(clientMsgId);
    this.outbox.retry(clientMsgId);
    if (item) this.#touch('thread', item.conversation_id);
    this.#flushOutbox();
  }

  discardSend(clientMsgId) {
    const item = this.outbox.get(clientMsgId);
    if (item && this.outbox.remove(clientMsgId)) this.#touch('thread', item.conversation_id);
  }

  async edit(messageId, content) {
    this.#updated(await this.api.put(`/messages/${messageId}`, { content }));
  }

  async remove(messageId) {
    this.#deleted(await this.api.delete(`/messages/${messageId}`));
  }

  /** The direct chat with `userId` (the existing one, or a new one); its id. */
  async startDirect(userId) {
    const view = await this.api.post('/conversations', { participant_ids: [userId] });
    this.#upsert(view);
    this.#touch('list');
    return view.conversation_id;
  }

  async createGroup(name, userIds) {
    const view = await this.api.post('/conversations', { name, is_group: true, participant_ids: userIds });
    this.#upsert(view);
    this.#touch('list');
    return view.conversation_id;
  }

  async addMembers(id, userIds) {
    this.#upsert(await this.api.post(`/conversations/${id}/participants`, { userIds }));
    this.#touch('list');
    this.#touch('thread', id);
  }

  /** Removes `userId` from group `id`; removing oneself is leaving it. */
  async removeMember(id, userId) {
    const view = await this.api.post(`/conversations/${id}/participants/${userId}/remove`);
    if (userId === this.me) this.#drop(id);
    else this.#upsert(view);
    this.#touch('list');
    this.#touch('thread', id);
  }

  /** Tells the others in conversation `id` whether this user is typing (renewed while keys come). */
  setTyping(id, typing) {
    if (!id) return;
    clearTimeout(this.#typingIdle);
    const sent = this.#typingSent;
    if (typing) {
      this.#typingIdle = setTimeout(() => this.setTyping(id, false), TYPING_IDLE_MS);
      if (sent?.id === id && Date.now() - sent.at < TYPING_RENEW_MS) return;
      this.#typingSent = { id, at: Date.now() };
    } else {
      if (sent?.id !== id) return;
      this.#typingSent = null;
    }
    this.live.emit('typing', { conversationId: id, isTyping: typing }).catch(() => {
      // Best effort: the mark expires by itself on the server.
    });
  }

  // --- events --------------------------------------------------------------------------

  #listen() {
    const chat = this.live.chat;
    chat.on('connect', () => this.#resume());
    chat.on('disconnect', () => {
      this.#generation += 1;
      this.#typingSent = null;
    });
    chat.on('newMessage', (m) => this.#receive(m));
    chat.on('messageUpdated', (m) => this.#updated(m));
    chat.on('messageDeleted', (e) => this.#deleted(e));
    chat.on('messageStatus', (e) => this.#status(e));
    chat.on('conversationCreated', (view) => {
      this.#upsert(view);
      this.#touch('list');
    });
    chat.on('participantsAdded', (e) => {
      this.#upsert(e.conversation);
      this.#touch('list');
      this.#touch('thread', e.conversationId);
    });
    chat.on('participantRemoved', (e) => this.#participantRemoved(e));
    chat.on('userTyping', (e) => this.#typingEvent(e));
    chat.on('userStatus', (e) => this.#userStatus(e));
  }

  /**
   * After every (re)connect: rejoin the open conversation's room, refetch the list (new
   * conversations, unread counts), `sync` every conversation whose messages are held, send
   * what the outbox holds, and move the receipts. Tried again until it succeeds or the
   * socket drops (the next connect starts over).
   */
  async #resume() {
    const generation = ++this.#generation;
    for (let attempt = 0; ; attempt++) {
      if (generation !== this.#generation || !this.live.chat.connected) return;
      try {
        if (this.openId) {
          await this.live.emit('joinConversation', { conversationId: this.openId }).catch((err) => {
            if (err.status !== 404) throw err;
          });
        }
        await this.refreshList();
        await this.#sync([...this.convs.values()].filter((c) => c.msgs));
        if (generation !== this.#generation) return;
        this.#flushOutbox();
        for (const c of this.convs.values()) this.#scheduleAck(c);
        this.live.caughtUp();
        return;
      } catch (err) {
        if (err instanceof SignedOut) return;
        await sleep(Math.min(5_000, 500 * 2 ** attempt));
      }
    }
  }

  /** Fills each conversation in `list` from the seq it holds everything up to. */
  async #sync(list) {
    const want = {};
    for (const c of list.slice(0, SYNC_MAX)) want[c.id] = c.synced;
    while (Object.keys(want).length > 0) {
      const data = await this.live.emit('sync', { conversations: { ...want } });
      for (const [id, part] of Object.entries(data.conversations)) {
        const c = this.convs.get(id);
        const from = want[id];
        delete want[id];
        if (!c) continue;
        if (part.error) {
          if (part.error.statusCode === 404) this.#drop(id);
          continue;
        }
        for (const m of part.messages) this.#take(c, m, true);
        for (const cur of part.cursors ?? []) this.#cursor(c, cur.user_id, cur.last_delivered_seq, cur.last_read_seq);
        const last = part.messages.at(-1)?.seq ?? from;
        if (part.has_more && last > from) {
          c.synced = Math.max(c.synced, last);
          want[id] = c.synced;
        } else {
          c.synced = Math.max(c.synced, part.last_seq);
          c.view.last_seq = Math.max(c.view.last_seq, part.last_seq);
        }
        this.#touch('thread', id);
      }
      this.#touch('list');
    }
  }

  async #receive(m) {
    const c = await this.#ensure(m.conversation_id);
    if (c) this.#take(c, m, true);
  }

  /**
   * Holds message `m` of conversation `c`, once. `live`: it came as it happened (an event,
   * a sync), so a seq beyond the next one is a gap to fill.
   */
  #take(c, m, live) {
    if (c.deleted.has(m.message_id)) return;
    const mine = m.sender_id === this.me;
    if (mine && m.client_msg_id && this.outbox.remove(m.client_msg_id)) this.#touch('thread', c.id);
    // Unread: messages of others past the read cursor that the server's count did not cover.
    const me = this.participant(c, this.me);
    const onScreen = this.openId === c.id && this.#visible();
    if (!mine && !onScreen && m.seq > c.base && !c.counted.has(m.seq) && m.seq > (me?.last_read_seq ?? 0)) {
      c.counted.add(m.seq);
      c.unread += 1;
    }
    c.view.last_seq = Math.max(c.view.last_seq, m.seq);
    if (!c.view.last_message || m.seq >= c.view.last_message.seq) {
      c.view.last_message = m;
      c.view.last_message_at = m.created_at;
    }
    if (c.msgs) {
      const had = c.msgs.get(m.message_id);
      if (!had || Date.parse(m.updated_at) > Date.parse(had.updated_at)) c.msgs.set(m.message_id, m);
      c.seqs.add(m.seq);
      this.#advance(c);
      if (live && m.seq > c.synced + 1) this.#gap(c);
      this.#touch('thread', c.id);
    }
    if (!mine && c.typing.delete(m.sender_id)) this.#touch('typing', c.id);
    this.#scheduleAck(c);
    this.#touch('list');
  }

  #updated(m) {
    const c = this.convs.get(m.conversation_id);
    if (!c || c.deleted.has(m.message_id)) return;
    const had = c.msgs?.get(m.message_id);
    if (had && Date.parse(m.updated_at) >= Date.parse(had.updated_at)) c.msgs.set(m.message_id, m);
    if (c.view.last_message?.message_id === m.message_id) c.view.last_message = m;
    this.#touch('thread', c.id);
    this.#touch('list');
  }

  #deleted({ message_id: messageId, conversation_id: id, seq }) {
    const c = this.convs.get(id);
    if (!c || c.deleted.has(messageId)) return;
    c.deleted.add(messageId);
    c.seqs.add(seq);
    const had = c.msgs?.get(messageId);
    c.msgs?.delete(messageId);
    if (c.msgs) this.#advance(c);
    const me = this.participant(c, this.me);
    if (had && had.sender_id !== this.me && seq > (me?.last_read_seq ?? 0) && c.unread > 0) c.unread -= 1;
    if (c.view.last_message?.message_id === messageId) {
      const rest = c.msgs ? [...c.msgs.values()].sort((a, b) => b.seq - a.seq) : [];
      c.view.last_message = rest[0] ?? null;
      // Not held here: the server knows which message is now the last, and the unread count.
      if (!c.msgs) this.#refreshOne(id);
    } else if (!c.msgs && !had) {
      this.#refreshOne(id);
    }
    this.#touch('thread', id);
    this.#touch('list');
  }

  #status({ messageId, conversationId, userId, status, seq, aggregate }) {
    const c = this.convs.get(conversationId);
    if (!c) return;
    this.#cursor(c, userId, seq, status === 'read' ? seq : undefined);
    const m = c.msgs?.get(messageId);
    if (m && m.sender_id === this.me && (RANK[aggregate] ?? 0) > (RANK[m.status] ?? 0)) m.status = aggregate;
    this.#touch('thread', conversationId);
  }

  #participantRemoved({ conversationId, userId }) {
    if (userId === this.me) {
      this.#drop(conversationId);
      return;
    }
    const c = this.convs.get(conversationId);
    if (!c) return;
    c.view.participants = c.view.participants.filter((p) => p.user_id !== userId);
    c.typing.delete(userId);
    this.#touch('thread', conversationId);
    this.#touch('list');
  }

  #typingEvent({ userId, conversationId, isTyping }) {
    const c = this.convs.get(conversationId);
    if (!c || userId === this.me) return;
    if (isTyping) c.typing.set(userId, this.participant(c, userId)?.username ?? 'Someone');
    else c.typing.delete(userId);
    this.#touch('typing', conversationId);
    this.#checkTyping();
  }

  #userStatus({ userId, status }) {
    this.presence.set(userId, status);
    for (const c of this.convs.values()) {
      const p = this.participant(c, userId);
      if (p) p.status = status;
    }
    this.dispatchEvent(new CustomEvent('presence', { detail: { userId, status } }));
  }

  // --- internals -----------------------------------------------------------------------

  #upsert(view) {
    let c = this.convs.get(view.conversation_id);
    if (!c) {
      c = conversation(view);
      this.convs.set(c.id, c);
    } else {
      const old = c.view;
      // Cursors and last_seq never move back; a view fetched before an event must not undo it.
      for (const p of view.participants) {
        const before = old.participants.find((q) => q.user_id === p.user_id);
        if (!before) continue;
        p.last_delivered_seq = Math.max(p.last_delivered_seq, before.last_delivered_seq);
        p.last_read_seq = Math.max(p.last_read_seq, before.last_read_seq);
      }
      const newer = (old.last_message?.seq ?? 0) > (view.last_message?.seq ?? 0) && !c.deleted.has(old.last_message.message_id);
      c.view = {
        ...view,
        last_seq: Math.max(old.last_seq, view.last_seq),
        last_message: newer ? old.last_message : view.last_message,
        last_message_at: newer ? old.last_message_at : view.last_message_at,
      };
    }
    for (const p of c.view.participants) this.presence.set(p.user_id, p.status);
    return c;
  }

  /** The server counted `unread` messages up to `lastSeq`; keep what this page counted past it. */
  #rebase(c, lastSeq, unread) {
    c.base = lastSeq;
    c.counted = new Set([...c.counted].filter((seq) => seq > lastSeq));
    c.unread = this.openId === c.id && this.#visible() ? 0 : unread + c.counted.size;
  }

  /** Conversation `id` from the server, with its unread count (one fetch at a time per id). */
  #fetch(id) {
    let fetching = this.#fetching.get(id);
    if (!fetching) {
      fetching = this.api
        .get(`/conversations/${id}`)
        .then(({ messages: _messages, unread_count: unread, ...view }) => {
          const c = this.#upsert(view);
          this.#rebase(c, view.last_seq, unread);
          this.#touch('list');
          return c;
        })
        .finally(() => this.#fetching.delete(id));
      this.#fetching.set(id, fetching);
    }
    return fetching;
  }

  /** Conversation `id`, fetched when this page does not know it yet; null when it cannot be. */
  async #ensure(id) {
    try {
      return this.convs.get(id) ?? (await this.#fetch(id));
    } catch {
      return null;
    }
  }

  async #refreshOne(id) {
    try {
      await this.#fetch(id);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) this.#drop(id);
    }
  }

  async #loadLatest(c) {
    const { messages, unread_count: unread, ...view } = await this.api.get(`/conversations/${c.id}`);
    this.#upsert(view);
    this.#rebase(c, view.last_seq, unread);
    c.msgs = c.msgs ?? new Map();
    for (const m of messages) {
      if (c.deleted.has(m.message_id)) continue;
      const had = c.msgs.get(m.message_id);
      if (!had || Date.parse(m.updated_at) > Date.parse(had.updated_at)) c.msgs.set(m.message_id, m);
      c.seqs.add(m.seq);
    }
    c.synced = Math.max(c.synced, view.last_seq);
    c.hasOlder = messages.length >= PAGE && messages[0].seq > 1;
    // Messages announced while the page was fetching arrived before there was a place to
    // hold them: the sync brings them back.
    if (c.view.last_seq > c.synced) this.#gap(c);
  }

  #advance(c) {
    while (c.seqs.has(c.synced + 1)) c.synced += 1;
  }

  #gap(c) {
    if (c.gapTimer) return;
    c.gapTimer = setTimeout(() => {
      c.gapTimer = 0;
      if (c.synced < c.view.last_seq && this.live.chat.connected) {
        this.#sync([c]).catch(() => {
          // The next reconnect syncs again.
        });
      }
    }, GAP_WAIT_MS);
  }

  #cursor(c, userId, delivered, read) {
    const p = this.participant(c, userId);
    if (!p) return;
    if (delivered !== undefined) p.last_delivered_seq = Math.max(p.last_delivered_seq, delivered);
    if (read !== undefined) {
      p.last_read_seq = Math.max(p.last_read_seq, read);
      p.last_delivered_seq = Math.max(p.last_delivered_seq, read);
    }
    if (userId === this.me && read !== undefined) {
      if (p.last_read_seq >= c.view.last_seq) c.unread = 0;
      else if (c.msgs) {
        c.unread = [...c.msgs.values()].filter((m) => m.sender_id !== this.me && m.seq > p.last_read_seq).length;
      }
      c.counted = new Set([...c.counted].filter((seq) => seq > p.last_read_seq));
      this.#touch('list');
    }
    this.#touch('thread', c.id);
  }

  #drop(id) {
    const c = this.convs.get(id);
    if (!c) return;
    clearTimeout(c.ackTimer);
    clearTimeout(c.gapTimer);
    this.convs.delete(id);
    if (this.openId === id) {
      this.openId = null;
      this.dispatchEvent(new CustomEvent('closed', { detail: id }));
    }
    this.#touch('list');
  }

  #scheduleAck(c) {
    if (!c) return;
    clearTimeout(c.ackTimer);
    c.ackTimer = setTimeout(() => this.#acknowledge(c), 150);
  }

  /** Moves this user's cursor: read while the conversation is on screen, else delivered. */
  async #acknowledge(c) {
    if (!this.live.chat.connected || this.convs.get(c.id) !== c) return;
    const me = this.participant(c, this.me);
    if (!me) return;
    const fromOthers = c.msgs
      ? [...c.msgs.values()].filter((m) => m.sender_id !== this.me)
      : [c.view.last_message].filter((m) => m && m.sender_id !== this.me);
    const latest = fromOthers.reduce((a, m) => (!a || m.seq > a.seq ? m : a), null);
    if (!latest) return;
    const read = this.openId === c.id && this.#visible();
    let status;
    if (read && latest.seq > me.last_read_seq) status = 'read';
    else if (latest.seq > me.last_delivered_seq) status = 'delivered';
    else return;
    try {
      await this.live.emit('updateMessageStatus', { messageId: latest.message_id, status });
      this.#cursor(c, this.me, latest.seq, status === 'read' ? latest.seq : undefined);
      if (status === 'read') this.dispatchEvent(new CustomEvent('read', { detail: c.id }));
    } catch {
      // Retried with the next message, the next visit, or the next reconnect.
    }
  }

  #flushOutbox() {
    if (!this.live.chat.connected) return;
    for (const item of this.outbox.items()) {
      if (item.failed || this.#sending.has(item.client_msg_id)) continue;
      this.#sending.add(item.client_msg_id);
      const payload = { content: item.content, conversation_id: item.conversation_id, client_msg_id: item.client_msg_id };
      this.live
        .emit('sendMessage', payload)
        .then((m) => {
          // Held (and out of the outbox) in the same task, so no flush sends it again and
          // no render shows it neither pending nor stored.
          this.outbox.remove(item.client_msg_id);
          this.#sending.delete(item.client_msg_id);
          const c = this.convs.get(m.conversation_id);
          if (c) this.#take(c, m, true);
          else this.#receive(m);
        })
        .catch((err) => {
          this.#sending.delete(item.client_msg_id);
          if (err instanceof ApiError && !err.transient) {
            this.outbox.fail(item.client_msg_id, errorText(err));
            this.#touch('thread', item.conversation_id);
            return;
          }
          const wait = err instanceof ApiError && err.retryAfter ? err.retryAfter * 1000 : RESEND_MS;
          setTimeout(() => this.#flushOutbox(), wait);
        });
    }
  }

  /** While someone is shown typing, asks the server who still is (marks expire silently). */
  #checkTyping() {
    if (this.#typingCheck) return;
    this.#typingCheck = setTimeout(async () => {
      this.#typingCheck = 0;
      const c = this.openId && this.convs.get(this.openId);
      for (const other of this.convs.values()) {
        if (other !== c && other.typing.size > 0) {
          other.typing.clear();
          this.#touch('typing', other.id);
        }
      }
      if (!c || c.typing.size === 0) return;
      try {
        const { typing } = await this.api.get(`/conversations/${c.id}/typing`);
        c.typing = new Map(typing.filter((t) => t.user_id !== this.me).map((t) => [t.user_id, t.username]));
        this.#touch('typing', c.id);
      } catch {
        // Checked again below.
      }
      if (c.typing.size > 0) this.#checkTyping();
    }, TYPING_CHECK_MS);
  }

  #visible() {
    return document.visibilityState === 'visible';
  }

  /** Collects changes and tells the views once, after the current task. */
  #touch(kind, id) {
    if (kind === 'list') this.#dirty.list = true;
    else if (kind === 'thread') this.#dirty.threads.add(id);
    else if (kind === 'typing') this.#dirty.typing.add(id);
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      const { list, threads, typing } = this.#dirty;
      this.#dirty = { list: false, threads: new Set(), typing: new Set() };
      if (list) this.dispatchEvent(new Event('list'));
      for (const id of threads) this.dispatchEvent(new CustomEvent('thread', { detail: id }));
      for (const id of typing) this.dispatchEvent(new CustomEvent('typing', { detail: id }));
    });
  }
}
