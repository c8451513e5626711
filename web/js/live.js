// The page's two Socket.IO connections, chat (`/`) and `/notifications`, to its own origin
// (socket.io-client carries both namespaces over one Engine.IO connection). It keeps them
// connected through network drops, node restarts and token expiry (docs/auth.md,
// "Sockets"), and says where the page stands: `connecting` (never connected yet),
// `reconnecting` (was connected, lost it) or `online` (connected and caught up: `Chats`
// calls `caughtUp` once its `sync` after the connect is done).

import { ApiError } from './api.js';

const ACK_TIMEOUT_MS = 10_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5_000;

export class Live extends EventTarget {
  state = 'connecting';
  #everOnline = false;
  #retries = new Map();

  constructor(session) {
    super();
    this.session = session;
    const options = {
      autoConnect: false,
      // Read at every (re)connect: the token may have been renewed since the last one.
      auth: (cb) => cb({ token: session.token }),
      reconnectionDelay: RETRY_MIN_MS,
      reconnectionDelayMax: RETRY_MAX_MS,
      timeout: ACK_TIMEOUT_MS,
    };
    // `io` is the global of the vendored socket.io-client bundle, loaded before this module.
    this.chat = globalThis.io(options);
    this.notes = globalThis.io('/notifications', options);
    for (const socket of [this.chat, this.notes]) this.#supervise(socket);
    this.chat.on('disconnect', () => this.#setState(this.#everOnline ? 'reconnecting' : 'connecting'));
  }

  async start() {
    await this.session.fresh();
    this.chat.connect();
    this.notes.connect();
  }

  stop() {
    for (const timer of this.#retries.values()) clearTimeout(timer.id);
    this.#retries.clear();
    this.chat.disconnect();
    this.notes.disconnect();
  }

  /** The chat socket is connected and the page has caught up with what it missed. */
  caughtUp() {
    if (!this.chat.connected) return;
    this.#everOnline = true;
    this.#setState('online');
  }

  /** Emits on the chat socket and resolves with the ack's `data`, or rejects with an `ApiError`. */
  async emit(event, payload, timeoutMs = ACK_TIMEOUT_MS) {
    if (!this.chat.connected) throw new ApiError(0, { message: 'Not connected to the server' });
    let ack;
    try {
      ack = await this.chat.timeout(timeoutMs).emitWithAck(event, payload);
    } catch {
      throw new ApiError(0, { message: 'The server did not answer' });
    }
    if (!ack?.ok) throw new ApiError(ack?.error?.statusCode ?? 0, ack?.error);
    return ack.data;
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }

  #supervise(socket) {
    socket.on('connect', () => {
      const pending = this.#retries.get(socket);
      if (pending) clearTimeout(pending.id);
      this.#retries.delete(socket);
    });
    socket.on('connect_error', async (err) => {
      const message = String(err?.message ?? '');
      if (/revoked/i.test(message)) {
        this.session.end('Your session has ended. Sign in again.');
        return;
      }
      if (/token/i.test(message)) {
        // The access token ran out while the socket was away (or was refused otherwise):
        // renew, then connect again with the new one.
        try {
          await this.session.renew();
        } catch {
          // Signed out (the session listener takes over) or no network (retried below).
        }
      }
      // The client retries a failed transport by itself, but not a refusal of the namespace
      // (a node draining, a token just renewed, too many sockets): that is retried here.
      if (!socket.active) this.#retry(socket);
    });
    socket.on('disconnect', (reason) => {
      // The server closed this socket on purpose (a logout elsewhere, a slow reader). The
      // next connect says whether the session still stands.
      if (reason === 'io server disconnect') this.#retry(socket);
    });
  }

  #retry(socket) {
    if (!this.session.active || this.#retries.get(socket)?.id) return;
    const attempt = (this.#retries.get(socket)?.attempt ?? 0) + 1;
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
    const id = setTimeout(() => {
      this.#retries.set(socket, { attempt, id: 0 });
      if (!socket.connected && !socket.active && this.session.active) socket.connect();
    }, delay);
    this.#retries.set(socket, { attempt, id });
  }
}
