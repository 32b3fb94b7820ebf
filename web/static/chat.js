// Switchboard demo chat, written with the browser SDK that every server
// serves at /sdk/switchboard.js (docs/sdk.md). The SDK does the connection
// work: reconnecting with backoff, resubscribing from the last message
// seen, and keeping what you send while offline in its outbox until the
// server has it. This page adds the chat itself:
//
//   * the room is the channel "chat": every message is a publication
//     {id, user, text, ts}, where id is made here, so that the page can
//     tell its own messages from the others' whatever offsets the server
//     gives them (offsets start again at 1 after a restart with the
//     in-memory broker);
//   * on joining, the last HISTORY_SHOWN messages come from history;
//   * who is in the room comes from presence, asked every few seconds;
//     names travel on a side channel, "chat-typing", which also carries
//     the "is typing" signals;
//   * a message sent while offline is shown as pending at once, and as
//     delivered when the server acknowledged it.

import { Switchboard } from '/sdk/switchboard.js';

const CHANNEL = 'chat';
const SIDE = 'chat-typing'; // "is typing" and "here is my name" signals
const HISTORY_SHOWN = 50; // messages loaded on joining
const MAX_SHOWN = 300; // messages kept on screen
const PRESENCE_EVERY_MS = 3000;
const TYPING_EVERY_MS = 2000; // at most one typing signal this often
const TYPING_SHOWN_MS = 4000; // how long "x is typing" stays without news
const STALE_SIGNAL_MS = 10000; // side channel signals older than this are ignored
const NAME_KEY = 'switchboard-chat-name';

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), presence: $('presence'), who: $('who'), typing: $('typing'), messages: $('messages'),
  composer: $('composer'), name: $('name'), message: $('message'), send: $('send'),
};

// A random hex id: message ids, and this page's id on the side channel.
function randomId() {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const pageId = randomId();
const mine = new Set(); // ids of the messages sent from this page (or its outbox)
const shown = new Map(); // message id -> its <li>
const names = new Map(); // server client id -> user name, from the side channel
const typers = new Map(); // user name -> time their "typing" expires
let members = null; // client ids in the room at the last presence answer
let everConnected = false;
let stopped = false; // the server told us not to come back
let joined = false; // history loaded, live messages shown as they come
let early = []; // publications that came before the history answer
let presenceTimer = 0;
let typingTimer = 0;
let lastTypingSent = 0;

const client = new Switchboard(location.origin, {
  // History and presence are WebSocket commands; the chat does not fall
  // back to SSE or long polling, where they are not available.
  transports: ['websocket'],
  backoff: { base: 500, max: 5000, factor: 2 },
  // Every tab is a participant of its own (its name, its presence entry,
  // its typing notice), so every tab has its own connection.
  sharedConnection: false,
});

// Status ---------------------------------------------------------------

// setStatus shows the connection state. data-state is one of connecting,
// connected, reconnecting, offline, disconnected, for styling and tests.
function setStatus(state, text = state) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  ui.send.disabled = state === 'disconnected'; // offline, messages wait in the outbox
}

client.on('state', (e) => {
  if (stopped) return;
  if (e.state === 'connected') {
    ui.status.dataset.client = client.clientId || '';
    ui.status.title = `client ${client.clientId}`;
    setStatus('connected');
    if (everConnected) note('Reconnected.');
    everConnected = true;
    members = null; // our own id changed: take the next answer as it is
    refreshPresence();
    announce();
  } else if (e.state === 'connecting') {
    setStatus(everConnected ? 'reconnecting' : 'connecting', everConnected ? 'reconnecting…' : 'connecting');
  } else if (e.code >= 4500 && e.code <= 4999) {
    stopped = true;
    setStatus('disconnected');
    note(`Disconnected by the server (${e.code}${e.reason ? ' ' + e.reason : ''}). Reload the page to come back.`);
    stopPresence();
  } else if (e.code === 0 && e.reason === 'offline') {
    setStatus('offline', 'offline');
    note('You are offline. Messages you send now are delivered when you are back.');
    stopPresence();
  } else {
    // Lost: the SDK reconnects by itself after a backoff delay.
    if (everConnected) note(`Connection lost (${e.code}${e.reason ? ' ' + e.reason : ''}).`);
    setStatus(everConnected ? 'reconnecting' : 'connecting', everConnected ? 'reconnecting…' : 'connecting');
    stopPresence();
  }
});

// The room ------------------------------------------------------------

const room = client.subscribe(CHANNEL, {
  onPublication: (p) => {
    if (joined) show(p.data, p.offset);
    else early.push(p);
  },
  onGap: (g) => {
    // What was published while we were away is gone (history too short,
    // or the server lost it in a restart). A real app reloads its state
    // from its backend; this one shows what history still has.
    note(g.reason === 'reset'
      ? 'The server lost recent history: some messages may be missing.'
      : 'The messages sent while you were away are no longer available.');
    loadHistory().catch(() => {});
  },
  onError: (err) => note(`Could not join the room (${err.message}).`),
});

// join shows the last messages, then the live ones that came meanwhile.
async function join() {
  try {
    await room.ready;
    await loadHistory();
  } catch (err) {
    note(`Could not load the history (${err.message}).`);
  }
  joined = true;
  for (const p of early) show(p.data, p.offset);
  early = [];
}

// loadHistory shows the channel's last messages that are not on screen.
async function loadHistory() {
  const h = await client.history(CHANNEL, { limit: HISTORY_SHOWN, reverse: true });
  for (const p of [...h.publications].reverse()) show(p.data, p.offset);
}

// show adds a chat message, or updates it when it is already on screen
// (one of ours shown as pending). Anyone may publish anything on the
// channel, so the data is checked, and all of it goes into the page as
// text, never as HTML.
function show(data, offset) {
  if (!data || typeof data !== 'object' || typeof data.text !== 'string') return;
  const id = typeof data.id === 'string' ? data.id : '';
  const existing = id && shown.get(id);
  if (existing) {
    if (offset !== undefined) existing.dataset.offset = offset;
    if (existing.classList.contains('mine')) setDelivery(existing, 'delivered');
    return;
  }
  const li = element('li', 'msg');
  if (id) {
    li.dataset.id = id;
    shown.set(id, li);
  }
  if (offset !== undefined) li.dataset.offset = offset;
  const meta = element('div', 'meta');
  meta.append(element('span', 'user', String(data.user || 'anonymous').slice(0, 32)));
  if (Number.isFinite(data.ts)) {
    const when = new Date(data.ts);
    const time = element('time', '', when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
    time.dateTime = when.toISOString();
    meta.append(time);
  }
  li.append(meta, element('div', 'text', data.text));
  if (id && mine.has(id)) {
    li.classList.add('mine');
    meta.append(element('span', 'delivery'));
    setDelivery(li, offset === undefined ? 'pending' : 'delivered');
  }
  append(li);
}

// setDelivery shows where one of our messages is: pending (in the outbox),
// delivered (acknowledged by the server) or failed (refused for good).
function setDelivery(li, state) {
  if (li.dataset.delivery === 'delivered') return;
  li.dataset.delivery = state;
  const label = li.querySelector('.delivery');
  if (label) label.textContent = state === 'pending' ? '⋯ pending' : state === 'delivered' ? '✓ delivered' : '✗ not sent';
}

// note adds a line from the page itself (connection events, errors).
function note(text) {
  append(element('li', 'note', text));
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function append(li) {
  const list = ui.messages;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.append(li);
  while (list.childElementCount > MAX_SHOWN) {
    const first = list.firstElementChild;
    if (first.dataset.id) shown.delete(first.dataset.id);
    first.remove();
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
}

// Sending -------------------------------------------------------------

function userName() {
  return ui.name.value.trim().slice(0, 32) || 'anonymous';
}

ui.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const user = ui.name.value.trim();
  const text = ui.message.value.trim();
  if (!user || !text || stopped) return;
  try {
    localStorage.setItem(NAME_KEY, user);
  } catch { /* storage may be disabled; the name is just not remembered */ }
  ui.message.value = '';
  const data = { id: randomId(), user, text, ts: Date.now() };
  mine.add(data.id);
  show(data); // pending until the server has it
  client.publish(CHANNEL, data).then(
    () => {
      const li = shown.get(data.id);
      if (li) setDelivery(li, 'delivered');
    },
    (err) => {
      const li = shown.get(data.id);
      if (li && client.outbox.some((e) => e.id && e.data && e.data.id === data.id && e.state === 'failed')) {
        setDelivery(li, 'failed');
        note(`Not sent (${err.message}): ${text}`);
      }
    },
  );
  ui.message.focus();
});

// The outbox also holds messages a previous page left unsent (it is kept
// in IndexedDB): show them as ours, pending, and as delivered once they
// leave it.
const outboxSeen = new Set();
function outboxChanged(entries) {
  const now = new Set();
  for (const e of entries) {
    const data = e.data;
    if (e.channel !== CHANNEL || !data || typeof data.id !== 'string') continue;
    now.add(data.id);
    outboxSeen.add(data.id);
    if (!mine.has(data.id)) {
      mine.add(data.id);
      show(data);
    }
    const li = shown.get(data.id);
    if (li && e.state === 'failed') setDelivery(li, 'failed');
  }
  for (const id of outboxSeen) {
    if (now.has(id)) continue;
    outboxSeen.delete(id);
    const li = shown.get(id);
    if (li && li.dataset.delivery === 'pending') setDelivery(li, 'delivered');
  }
}
client.on('outbox', outboxChanged);

// Typing and names: the side channel ------------------------------------

client.subscribe(SIDE, {
  onPublication: (p) => {
    const d = p.data;
    if (!d || typeof d !== 'object' || typeof d.user !== 'string' || d.page === pageId) return;
    if (!Number.isFinite(d.ts) || Math.abs(Date.now() - d.ts) > STALE_SIGNAL_MS) return; // recovered, old
    const user = d.user.slice(0, 32);
    if (typeof d.client === 'string' && d.client) learnName(d.client, user);
    if (d.type === 'typing') {
      typers.set(user, Date.now() + TYPING_SHOWN_MS);
      showTyping();
    }
  },
});

// signal publishes on the side channel, when connected only: a signal
// kept in the outbox would be stale when it arrives.
function signal(type) {
  if (client.state !== 'connected') return;
  client.publish(SIDE, { type, user: userName(), client: client.clientId, page: pageId, ts: Date.now() }).catch(() => {});
}

// announce tells the room this page's name (for the list of who is here).
function announce() {
  signal('here');
}

ui.message.addEventListener('input', () => {
  const now = Date.now();
  if (!ui.message.value || now - lastTypingSent < TYPING_EVERY_MS) return;
  lastTypingSent = now;
  signal('typing');
});

function showTyping() {
  clearTimeout(typingTimer);
  const now = Date.now();
  for (const [user, until] of typers) if (until <= now) typers.delete(user);
  const list = [...typers.keys()];
  ui.typing.textContent = list.length === 0 ? '' : `${list.join(', ')} ${list.length === 1 ? 'is' : 'are'} typing…`;
  ui.typing.hidden = list.length === 0;
  if (list.length > 0) typingTimer = setTimeout(showTyping, Math.min(...typers.values()) - now + 10);
}

// Presence ------------------------------------------------------------

const awaitingName = new Set(); // joined clients whose name has not come yet

function learnName(id, user) {
  const known = names.get(id);
  names.set(id, user);
  if (awaitingName.delete(id)) note(`${user} joined.`);
  if (known !== user) renderWho();
  if (members && !members.has(id)) refreshPresence(); // someone new: do not wait for the next round
}

function stopPresence() {
  clearTimeout(presenceTimer);
  ui.presence.textContent = '';
  delete ui.presence.dataset.count;
  ui.who.textContent = '';
}

// refreshPresence asks who is in the room, shows them, and notes who
// joined or left since the last answer.
async function refreshPresence() {
  clearTimeout(presenceTimer);
  if (stopped || client.state !== 'connected') return;
  presenceTimer = setTimeout(refreshPresence, PRESENCE_EVERY_MS);
  let res;
  try {
    res = await client.presence(CHANNEL);
  } catch {
    return;
  }
  if (client.state !== 'connected') return;
  const own = client.clientId;
  const ids = new Set(res.clients.map((c) => c.client).filter(Boolean));
  if (own && !ids.has(own)) {
    // Asked before our subscription was in: ask again shortly.
    clearTimeout(presenceTimer);
    presenceTimer = setTimeout(refreshPresence, 300);
    return;
  }
  if (members) {
    let someoneNew = false;
    for (const id of ids) {
      if (members.has(id) || id === own) continue;
      someoneNew = true;
      if (names.has(id)) note(`${names.get(id)} joined.`);
      else awaitingName.add(id);
    }
    for (const id of members) {
      if (ids.has(id) || id === own) continue;
      if (awaitingName.delete(id)) continue;
      note(`${names.get(id) || 'someone'} left.`);
    }
    if (someoneNew) announce(); // so that they learn our name
  }
  members = ids;
  ui.presence.textContent = `${res.num_clients} online`;
  ui.presence.dataset.count = res.num_clients;
  renderWho();
}

function renderWho() {
  if (!members) return;
  const own = client.clientId;
  const list = [...members].map((id) => (id === own ? `${userName()} (you)` : names.get(id) || 'guest'));
  ui.who.textContent = list.sort().join(', ');
}

// Start ---------------------------------------------------------------

try {
  ui.name.value = localStorage.getItem(NAME_KEY) || '';
} catch { /* see above */ }
if (!ui.name.value) ui.name.value = `guest-${Math.floor(Math.random() * 9000 + 1000)}`;
ui.name.addEventListener('change', announce);
setStatus('connecting');
outboxChanged(client.outbox);
join();
