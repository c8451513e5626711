// Starts the page: the sign-in screen, or, for a signed-in device, the chat with its live
// connection. Signing out reloads the page, so that nothing of one account's state
// outlives it.

import { Api } from './api.js';
import { Bell } from './bell.js';
import { Chats } from './chats.js';
import { byId, errorText, paintPresence, toast } from './dom.js';
import { Live } from './live.js';
import { GroupView, MembersView, PeopleView } from './people.js';
import { Session, SignedOut } from './session.js';
import { Sidebar } from './sidebar.js';
import { SignInView } from './signin.js';
import { ThreadView } from './thread.js';

/** Why the last page was signed out, shown on the sign-in screen after the reload. */
const SIGNED_OUT_KEY = 'chatty.signedout';
/** The first connection may take a moment; the banner waits this long before saying so. */
const CONNECTING_GRACE_MS = 1_500;

const session = new Session();
session.addEventListener('signedout', (e) => {
  sessionStorage.setItem(SIGNED_OUT_KEY, e.detail.reason ?? '');
  location.reload();
});

const signIn = new SignInView(session, () => {
  signIn.hide();
  start();
});

function start() {
  const api = new Api(session);
  const live = new Live(session);
  const chats = new Chats({ api, live, me: session.user });
  const panes = byId('panes');
  const placeholder = byId('placeholder');

  const thread = new ThreadView(chats, { onMembers: (id) => members.open(id) });
  const sidebar = new Sidebar(chats, (id) => openConversation(id));
  const people = new PeopleView({ api, chats, onOpenConversation: (id) => openConversation(id) });
  const members = new MembersView({ api, chats });
  new GroupView({ api, chats, onOpenConversation: (id) => openConversation(id) });
  new Bell({ api, live, chats, people, onOpenConversation: (id) => openConversation(id) });

  async function openConversation(id) {
    try {
      await chats.open(id);
    } catch (err) {
      toast(`Could not open the conversation: ${errorText(err)}`);
      return;
    }
    if (chats.openId !== id) return;
    panes.dataset.view = 'thread';
    placeholder.hidden = true;
    thread.show(id);
    sidebar.render();
    thread.focusComposer();
  }

  function showList() {
    const id = chats.openId;
    chats.close();
    thread.hide();
    panes.dataset.view = 'list';
    placeholder.hidden = false;
    sidebar.render();
    document.querySelector(`.conv[data-conversation-id="${CSS.escape(id ?? '')}"]`)?.focus();
  }

  byId('thread-back').addEventListener('click', showList);
  chats.addEventListener('closed', () => {
    showList();
    toast('You are no longer in that conversation.');
  });
  chats.addEventListener('presence', (e) => paintPresence(document, e.detail.userId, e.detail.status));

  // The banner says when the page is not live: it shows while the first connection takes
  // longer than a moment, and at once when a connection is lost; it goes once the page has
  // caught up with what it missed.
  const banner = byId('banner');
  let slow = setTimeout(() => showBanner('Connecting…'), CONNECTING_GRACE_MS);
  function showBanner(text) {
    banner.textContent = text;
    banner.hidden = false;
  }
  live.addEventListener('state', (e) => {
    clearTimeout(slow);
    if (e.detail === 'online') banner.hidden = true;
    else if (e.detail === 'reconnecting') showBanner('Reconnecting…');
    else slow = setTimeout(() => showBanner('Connecting…'), CONNECTING_GRACE_MS);
  });

  accountMenu(api);
  byId('signin').hidden = true;
  byId('app').hidden = false;
  live.start().catch((err) => {
    if (!(err instanceof SignedOut)) toast(`Could not connect: ${errorText(err)}`);
  });
  // The list comes over REST at once; the socket's first connect refreshes it again.
  chats.refreshList().catch((err) => {
    if (!(err instanceof SignedOut)) toast(`Could not load conversations: ${errorText(err)}`);
  });
  people.countRequests();
}

function accountMenu(api) {
  const button = byId('account');
  const menu = byId('account-menu');
  button.textContent = session.user.username;
  button.setAttribute('aria-label', `Account: ${session.user.username}`);
  const toggle = (open) => {
    menu.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open) menu.querySelector('[role=menuitem]').focus();
  };
  button.addEventListener('click', () => toggle(menu.hidden));
  menu.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      toggle(false);
      button.focus();
    }
  });
  document.addEventListener('click', (e) => {
    if (!menu.hidden && !menu.contains(e.target) && e.target !== button) toggle(false);
  });
  byId('sign-out').addEventListener('click', async () => {
    try {
      await api.post('/auth/logout');
    } catch {
      // Signed out here all the same; the session expires on the server by itself.
    }
    session.end('');
  });
}

const reason = sessionStorage.getItem(SIGNED_OUT_KEY);
sessionStorage.removeItem(SIGNED_OUT_KEY);
if (session.active) start();
else signIn.show(reason ?? '');
