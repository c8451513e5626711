// The web client in a real browser: two people, each in a browser context of their own on a
// different node of the cluster (alice on a desktop-sized window, bob on a phone-sized
// one), sign up, become friends, chat, see each other type and read, edit and delete, and
// bob's node restarts under him. Every request must go to the page's own node, and the
// page must load in under 200 KB. tests/browser/run.sh runs it; screenshots of each step
// go to .chatty/browser/.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const ARTEFACTS = join(ROOT, '.chatty/browser');
const NODES = (process.env.CHATTY_NODES ?? 'http://127.0.0.1:3101,http://127.0.0.1:3102,http://127.0.0.1:3103')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
const CLUSTER_CTL = process.env.CHATTY_CLUSTER_CTL;
const CHROMIUM = process.env.CHATTY_CHROMIUM ?? '/usr/bin/chromium';
/** What the first load of the page may transfer, headers included. */
const PAGE_BUDGET_BYTES = 200 * 1024;
/** Each step's waits; a node restart (drain, exit, start, ready) gets its own. */
const STEP_MS = 20_000;
const RESTART_MS = 120_000;

assert.ok(NODES.length >= 2, 'CHATTY_NODES must name at least two nodes');

const suffix = randomUUID().slice(0, 6);
let browser;
let shot = 0;

/**
 * A person with a browser context on `node`: records every request that leaves for
 * another origin, every uncaught error, and every Content-Security-Policy violation.
 */
async function person(name, node, options) {
  const context = await browser.newContext({ baseURL: node, ...options });
  context.setDefaultTimeout(STEP_MS);
  const page = await context.newPage();
  const origin = new URL(node).origin;
  const who = {
    name,
    username: `${name}_${suffix}`,
    node,
    context,
    page,
    foreign: [],
    errors: [],
    violations: [],
  };
  context.on('request', (r) => {
    if (new URL(r.url()).origin !== origin) who.foreign.push(r.url());
  });
  page.on('websocket', (ws) => {
    if (new URL(ws.url()).host !== new URL(node).host) who.foreign.push(ws.url());
  });
  page.on('pageerror', (err) => who.errors.push(String(err)));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy|Trusted Type/i.test(msg.text())) who.violations.push(msg.text());
  });
  return who;
}

async function screenshot(who, step) {
  shot += 1;
  const file = join(ARTEFACTS, `${String(shot).padStart(2, '0')}-${step}-${who.name}.png`);
  await who.page.screenshot({ path: file });
  return file;
}

/** Loads the page with an empty cache; the bytes transferred (bodies as sent, and headers). */
async function load(who) {
  const sizes = [];
  const onFinished = (r) => sizes.push(r.sizes().then((s) => s.responseBodySize + s.responseHeadersSize));
  who.page.on('requestfinished', onFinished);
  await who.page.goto('/', { waitUntil: 'networkidle' });
  who.page.off('requestfinished', onFinished);
  return { bytes: (await Promise.all(sizes)).reduce((a, b) => a + b, 0), requests: sizes.length };
}

async function signUp(who) {
  const { page } = who;
  await page.getByRole('tab', { name: 'Create account' }).click();
  const form = page.locator('#register-form');
  await form.getByLabel('Username').fill(who.username);
  await form.getByLabel('Email').fill(`${who.username}@example.com`);
  await form.getByLabel('Password').fill(`password-${who.username}`);
  await form.getByRole('button', { name: 'Create account' }).click();
  await page.locator('#app').waitFor();
  await page.locator('#account').filter({ hasText: who.username }).waitFor();
}

/** The open conversation's stored message(s) whose text contains `text`. */
const message = (who, text) => who.page.locator('#messages li[data-message-id]', { hasText: text });

async function send(who, text) {
  const composer = who.page.locator('#composer-input');
  await composer.fill(text);
  await composer.press('Enter');
  await message(who, text).waitFor();
}

/** The message ids and seqs shown, in the order shown. */
async function shown(who) {
  return who.page.locator('#messages li[data-message-id]').evaluateAll((items) =>
    items.map((li) => ({ id: li.dataset.messageId, seq: Number(li.dataset.seq), text: li.querySelector('.body')?.textContent })));
}

let alice;
let bob;

before(async () => {
  await mkdir(ARTEFACTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  alice = await person('alice', NODES[0], { viewport: { width: 1200, height: 760 } });
  bob = await person('bob', NODES[1], { viewport: { width: 390, height: 800 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
});

after(async () => {
  await browser?.close();
});

test('the page loads from its node alone, within the weight budget', async (t) => {
  const weights = {};
  for (const who of [alice, bob]) {
    const { bytes, requests } = await load(who);
    weights[who.name] = { bytes, requests };
    assert.ok(bytes < PAGE_BUDGET_BYTES, `${who.name}: the page transferred ${bytes} bytes in ${requests} requests`);
    await who.page.getByRole('tab', { name: 'Sign in' }).waitFor();
    assert.deepEqual(who.foreign, [], `${who.name}: requests to other origins`);
  }
  const report = `first load of the page (empty cache), bytes transferred with headers: ${weights.alice.bytes} in ${weights.alice.requests} requests`;
  t.diagnostic(report);
  await writeFile(join(ARTEFACTS, 'page-weight.txt'), `${report}\n`);
  await screenshot(alice, 'sign-in');
});

test('two people sign up, each on a different node', async () => {
  await Promise.all([signUp(alice), signUp(bob)]);
  await Promise.all([alice, bob].map((who) => who.page.locator('#banner').waitFor({ state: 'hidden' })));
  await screenshot(bob, 'signed-up');
});

test('a friend request reaches the other person through the notification bell, and is accepted', async () => {
  // Arrange: alice finds bob
  await alice.page.getByRole('button', { name: /People and friend requests/ }).click();
  await alice.page.getByLabel('Search people').fill(bob.username);

  // Act
  await alice.page.getByRole('button', { name: `Add ${bob.username} as a friend` }).click();

  // Assert: bob's bell counts it, and the notification lets him accept
  await bob.page.locator('#bell-count').filter({ hasText: '1' }).waitFor();
  await bob.page.getByRole('button', { name: /Notifications, 1 unread/ }).click();
  const note = bob.page.locator('#notifications-list li[data-type=friend_request]');
  await note.filter({ hasText: alice.username }).waitFor();
  await screenshot(bob, 'notification');
  await note.getByRole('button', { name: 'Accept' }).click();
  await bob.page.locator('#notifications-list li.note.unread').waitFor({ state: 'detached' });
  await bob.page.keyboard.press('Escape');
  // ... and alice hears that bob accepted
  await alice.page.locator('.person', { hasText: bob.username }).locator('.person-detail', { hasText: /^Friend$/ }).waitFor();
  await alice.page.locator('#bell-count').filter({ hasText: '1' }).waitFor();
});

test('a direct chat started from the search shows up for the other person', async () => {
  await alice.page.getByRole('button', { name: `Message ${bob.username}` }).click();
  await alice.page.locator('#thread-title').filter({ hasText: bob.username }).waitFor();
  await bob.page.locator('.conv', { hasText: alice.username }).click();
  await bob.page.locator('#thread-title').filter({ hasText: alice.username }).waitFor();
  // Both are online, and each sees the other's dot.
  await alice.page.locator('#thread-sub').filter({ hasText: 'Online' }).waitFor();
  await alice.page.locator(`.conv .dot.online`).waitFor();
});

test('typing shows on the other side, messages go both ways, and the receipt turns to read', async () => {
  // Arrange
  const hello = `hello bob ${suffix}`;
  const reply = `hi alice ${suffix}`;

  // Act: alice types, then sends
  await alice.page.locator('#composer-input').fill(hello);
  await bob.page.locator('#typing').filter({ hasText: `${alice.username} is typing` }).waitFor();
  await screenshot(bob, 'typing');
  await alice.page.locator('#composer-input').press('Enter');

  // Assert: bob has it once, bob's open conversation reads it, alice's receipt says so
  await message(bob, hello).waitFor();
  await bob.page.locator('#typing').filter({ hasText: /^$/ }).waitFor({ state: 'attached' });
  await message(alice, hello).locator('.receipt[data-status=read]').waitFor();
  await send(bob, reply);
  await message(alice, reply).waitFor();
  await message(bob, reply).locator('.receipt[data-status=read]').waitFor();
  for (const [who, text] of [[alice, hello], [alice, reply], [bob, hello], [bob, reply]]) {
    assert.equal(await message(who, text).count(), 1, `${who.name} shows "${text}" once`);
  }
  await screenshot(alice, 'read');
  await screenshot(bob, 'read');
});

test('the sender edits and deletes a message, and the other side follows', async () => {
  // Edit
  const typo = `see you tomorow ${suffix}`;
  const fixed = `see you tomorrow ${suffix}`;
  await send(alice, typo);
  await message(bob, typo).waitFor();
  const mine = message(alice, typo);
  await mine.hover();
  await mine.getByRole('button', { name: 'Edit message' }).click();
  await alice.page.getByRole('textbox', { name: 'Edit message' }).fill(fixed);
  await alice.page.getByRole('textbox', { name: 'Edit message' }).press('Enter');
  await message(bob, fixed).filter({ hasText: 'edited' }).waitFor();

  // Delete
  const oops = `wrong chat ${suffix}`;
  await send(alice, oops);
  await message(bob, oops).waitFor();
  await message(alice, oops).hover();
  await message(alice, oops).getByRole('button', { name: 'Delete message' }).click();
  await alice.page.locator('#confirm-yes').click();
  await message(alice, oops).waitFor({ state: 'detached' });
  await message(bob, oops).waitFor({ state: 'detached' });
});

test("after bob's node restarts, the message sent meanwhile is shown once", { skip: !CLUSTER_CTL && 'CHATTY_CLUSTER_CTL is not set', timeout: RESTART_MS + 60_000 }, async (t) => {
  // Arrange
  const away = `sent while you were away ${suffix}`;
  const had = await shown(bob);

  // Act: restart bob's node (node 2: CHATTY_NODES lists node 1, 2, ...); alice sends while
  // bob's page says it is reconnecting
  const started = Date.now();
  const restart = promisify(execFile)('bash', [CLUSTER_CTL, 'restart-node', '2'], { timeout: RESTART_MS });
  await bob.page.locator('#banner').filter({ hasText: 'Reconnecting' }).waitFor({ timeout: RESTART_MS });
  await screenshot(bob, 'reconnecting');
  await send(alice, away);
  // Stored while bob was away: it can only reach him through the catch-up after reconnecting.
  assert.ok(await bob.page.locator('#banner').isVisible(), 'bob was back before the message was stored');
  await restart;
  await bob.page.locator('#banner').waitFor({ state: 'hidden', timeout: RESTART_MS });
  t.diagnostic(`bob was back ${Date.now() - started} ms after the restart began`);

  // Assert: the message is there once, nothing shown twice, everything in seq order
  await message(bob, away).waitFor();
  // A replay or a late live event would show up now if it were going to.
  await bob.page.waitForTimeout(1_500);
  assert.equal(await message(bob, away).count(), 1, 'the message sent meanwhile is shown once');
  const has = await shown(bob);
  assert.equal(new Set(has.map((m) => m.id)).size, has.length, `a message shown twice: ${JSON.stringify(has)}`);
  const seqs = has.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'messages in seq order');
  assert.deepEqual(has.slice(0, had.length), had, 'what bob had before is unchanged');
  assert.equal(has.length, had.length + 1);
  // bob's page, back and open on the conversation, reads it.
  await message(alice, away).locator('.receipt[data-status=read]').waitFor();
  await screenshot(bob, 'caught-up');
  await screenshot(alice, 'caught-up');
});

test('no request left for another origin, and the page raised no error', async () => {
  for (const who of [alice, bob]) {
    const text = await who.page.locator('#app').innerText();
    assert.doesNotMatch(text, /\b(null|undefined|NaN)\b|\[object Object\]/, `${who.name}: a value rendered as text`);
    assert.deepEqual(who.foreign, [], `${who.name}: requests to other origins`);
    assert.deepEqual(who.errors, [], `${who.name}: uncaught errors`);
    assert.deepEqual(who.violations, [], `${who.name}: Content-Security-Policy violations`);
  }
});
