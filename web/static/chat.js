// Switchboard demo chat.
//
// This file is the chat room and also a small, complete example of a
// Switchboard client written against the plain browser WebSocket API, with
// no library. The protocol, as this page uses it:
//
//   * Open ws://<host>/ws (wss:// on an https page). Every text frame carries
//     one JSON object, in both directions.
//   * Commands look like {"command": "...", "id": N, ...}. When a command
//     carries an "id", the server answers it with the same id:
//       {"id": N, "result": {...}}                      on success
//       {"id": N, "error": {"code": C, "message": "..."}} on failure
//     Without an "id" the server answers failures only.
//   * {"command":"connect","id":1}
//       -> {"id":1,"result":{"client":"<id>","node":"...","version":"..."}}
//   * {"command":"subscribe","channel":"chat","id":2}
//       -> {"id":2,"result":{"channel":"chat","offset":12,"epoch":"ABCD"}}
//     "offset" is the channel's latest position; "epoch" names the stream
//     of offsets, and changes when the server has lost the channel's history
//     (for example after a restart with the in-memory broker).
//   * {"command":"publish","channel":"chat","data":<any JSON>,"id":3}
//       -> {"id":3,"result":{"offset":13,"epoch":"KZ3MA7QD"}}
//   * Every subscriber of the channel, the publisher included, then gets a
//     push, which has no "id":
//       {"channel":"chat","data":<the same JSON>,"offset":13}
//   * Subscriptions belong to one connection: after a reconnect, subscribe
//     again, with "since" set to the last position held, to get what was
//     missed:
//       {"command":"subscribe","channel":"chat","since":{"offset":13,"epoch":"ABCD"},"id":4}
//       -> {"id":4,"result":{"channel":"chat","offset":15,"epoch":"ABCD",
//            "recovered":true,"publications":[{...offset 14...},{...offset 15...}]}}
//     With "recovered":false the missed messages are gone (history is
//     bounded, or the server lost it): reload the state from your backend.
//   * {"command":"presence","channel":"chat","id":5}
//       -> {"id":5,"result":{"clients":[...],"num_clients":3,"num_users":0}}
//     When the server runs with join_leave on, subscribers also get
//     {"channel":"chat","join":{...}} and {"channel":"chat","leave":{...}}.
//   * Close codes 4000-4499 mean "reconnect" (4000 server shutting down,
//     4001 slow consumer, 4002 idle timeout, 4003 disconnected by server),
//     4500 and above mean "do not reconnect". Other codes (1006 when the
//     network fails, for instance) are worth a retry too.

'use strict';

(() => {
  const CHANNEL = 'chat';

  // Reconnect delays grow exponentially and use "full jitter": each delay is
  // drawn at random between 0 and the current ceiling, so that the many
  // clients a restarting server drops at once do not all return together.
  // The ceiling starts again from the base as soon as a connection is
  // accepted and the room joined (the subscribe reply came back): the
  // server is up and serving, so the next loss, even seconds later, is
  // news, not more of the same outage. A server that accepts connections
  // but cannot serve them never answers the subscribe, so the delays keep
  // growing then.
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_FACTOR = 2;
  const BACKOFF_CAP_MS = 5000;

  const MAX_SHOWN = 300; // messages kept on screen
  const NAME_KEY = 'switchboard-chat-name';

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'), presence: $('presence'), messages: $('messages'), composer: $('composer'),
    name: $('name'), message: $('message'), send: $('send'),
  };

  let ws = null; // the current WebSocket; null while waiting to reconnect
  let nextId = 1; // command ids, unique for the life of the page
  const pending = new Map(); // command id -> callback(reply)
  let connectedAt = 0; // when the subscription was confirmed; 0 when down
  let attempt = 0; // reconnect attempts since the room was last joined
  let retryTimer = 0;
  let countdownTimer = 0;
  let position = null; // {epoch, offset} of the last publication seen
  const mine = new Set(); // offsets of this page's own messages
  let presenceTimer = 0;
  const PRESENCE_EVERY_MS = 5000; // refresh even without join/leave pushes

  // setStatus shows the connection state. data-state is one of connecting,
  // connected, reconnecting, disconnected, for styling and for tests.
  function setStatus(state, text = state) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
    ui.send.disabled = state !== 'connected';
  }

  // request sends a command with a fresh id and calls back with its reply.
  function request(cmd, callback) {
    const id = nextId++;
    pending.set(id, callback);
    ws.send(JSON.stringify({ ...cmd, id }));
  }

  function connect() {
    clearTimeout(retryTimer);
    clearInterval(countdownTimer);
    setStatus('connecting');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const sock = new WebSocket(`${scheme}//${location.host}/ws`);
    ws = sock;

    sock.onopen = () => {
      // Commands may be sent back to back; replies come in order per
      // connection, and each is matched to its command by id anyway.
      request({ command: 'connect' }, (reply) => {
        if (!reply.result) return;
        ui.status.dataset.client = reply.result.client;
        ui.status.title = `client ${reply.result.client}, server version ${reply.result.version}`;
      });
      // After a reconnect, ask for what was missed since the last position.
      const cmd = { command: 'subscribe', channel: CHANNEL };
      if (position) cmd.since = position;
      request(cmd, (reply) => {
        if (reply.error) {
          // For example 503 "retry later": drop this connection and let the
          // close handler schedule another attempt.
          note(`Could not join the room (${reply.error.code} ${reply.error.message}).`);
          sock.close();
          return;
        }
        subscribed(reply.result);
      });
    };
    sock.onmessage = (ev) => receive(ev.data);
    // An error event is always followed by a close event: all the handling
    // is done there.
    sock.onclose = (ev) => {
      if (sock === ws) closed(ev);
    };
  }

  function subscribed({ offset, epoch, recovered, publications }) {
    if (recovered === true) {
      // Everything sent while we were away, in order, exactly once; live
      // messages follow.
      for (const p of publications || []) show(p.data, p.offset);
      const n = (publications || []).length;
      note(n > 0 ? `Reconnected. ${n} missed message(s) recovered.` : 'Reconnected.');
    } else if (recovered === false) {
      // History no longer holds our position: a real app would reload its
      // state from its backend here.
      note('Reconnected. The messages sent while you were away are no longer available.');
      mine.clear();
    }
    position = { epoch, offset };
    connectedAt = Date.now();
    attempt = 0; // up and serving: the next outage starts from the base delay
    ui.status.dataset.attempt = attempt;
    setStatus('connected');
    refreshPresence();
  }

  // refreshPresence asks who is in the room and shows the count.
  function refreshPresence() {
    clearTimeout(presenceTimer);
    if (!ws || !connectedAt) return;
    request({ command: 'presence', channel: CHANNEL }, (reply) => {
      if (reply.result) {
        const n = reply.result.num_clients;
        ui.presence.textContent = `${n} online`;
        ui.presence.dataset.count = n;
      } else {
        ui.presence.textContent = '';
      }
    });
    presenceTimer = setTimeout(refreshPresence, PRESENCE_EVERY_MS);
  }

  function closed(ev) {
    ws = null;
    // Commands still waiting will never be answered now.
    for (const callback of pending.values()) callback({ error: { code: 0, message: 'connection closed' } });
    pending.clear();
    const wasUp = connectedAt !== 0;
    connectedAt = 0;
    clearTimeout(presenceTimer);
    ui.presence.textContent = '';

    const why = `${ev.code}${ev.reason ? ' ' + ev.reason : ''}`;
    if (ev.code >= 4500) {
      setStatus('disconnected');
      note(`Disconnected by the server (${why}). Reload the page to come back.`);
      return;
    }
    if (wasUp) note(`Connection lost (${why}).`);
    scheduleReconnect();
  }

  function scheduleReconnect() {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * BACKOFF_FACTOR ** attempt);
    const delay = Math.random() * ceiling;
    attempt++;
    ui.status.dataset.attempt = attempt; // for tests
    const due = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, due - Date.now()) / 1000;
      setStatus('reconnecting', `reconnecting in ${left.toFixed(1)}s`);
    };
    tick();
    countdownTimer = setInterval(tick, 100);
    retryTimer = setTimeout(connect, delay);
  }

  // receive handles one frame from the server.
  function receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.id !== undefined) {
      // A reply to one of our commands.
      const callback = pending.get(msg.id);
      pending.delete(msg.id);
      if (callback) callback(msg);
    } else if (msg.channel === CHANNEL && msg.offset !== undefined) {
      // A publication on the channel.
      position = { epoch: position && position.epoch, offset: msg.offset };
      show(msg.data, msg.offset);
    } else if (msg.channel === CHANNEL && msg.reset) {
      // The server lost this channel's history while we were subscribed:
      // messages may be missing. A real app reloads its state here.
      note('The server lost recent history: some messages may be missing.');
      position = { epoch: msg.reset.epoch, offset: msg.reset.offset };
      mine.clear();
    } else if (msg.channel === CHANNEL && (msg.join || msg.leave)) {
      refreshPresence();
    } else if (msg.error) {
      // The failure of a command sent without an id.
      note(`Server error ${msg.error.code}: ${msg.error.message}`);
    }
  }

  // show adds a chat message. Anyone may publish anything on the channel, so
  // the data is checked, and all of it goes into the page as text (never as
  // HTML).
  function show(data, offset) {
    if (!data || typeof data !== 'object' || typeof data.text !== 'string') return;
    const li = element('li', 'msg');
    li.dataset.offset = offset;
    if (mine.has(offset)) li.classList.add('mine');
    const meta = element('div', 'meta');
    meta.append(element('span', 'user', String(data.user || 'anonymous').slice(0, 32)));
    if (Number.isFinite(data.ts)) {
      const when = new Date(data.ts);
      const time = element('time', '', when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }));
      time.dateTime = when.toISOString();
      meta.append(time);
    }
    li.append(meta, element('div', 'text', data.text));
    append(li);
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
    while (list.childElementCount > MAX_SHOWN) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  ui.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const user = ui.name.value.trim();
    const text = ui.message.value.trim();
    if (!user || !text || !ws || !connectedAt) return;
    try {
      localStorage.setItem(NAME_KEY, user);
    } catch { /* storage may be disabled; the name is just not remembered */ }
    ui.message.value = '';
    request({ command: 'publish', channel: CHANNEL, data: { user, text, ts: Date.now() } }, (reply) => {
      if (reply.error) {
        note(`Not sent (${reply.error.code} ${reply.error.message}): ${text}`);
        if (!ui.message.value) ui.message.value = text;
        return;
      }
      // The publication may arrive before or after this reply: mark it
      // as ours either way.
      mine.add(reply.result.offset);
      const li = ui.messages.querySelector(`li[data-offset="${reply.result.offset}"]`);
      if (li) li.classList.add('mine');
    });
    ui.message.focus();
  });

  // Coming back online is a good moment to retry without waiting.
  window.addEventListener('online', () => {
    if (!ws && ui.status.dataset.state === 'reconnecting') connect();
  });

  try {
    ui.name.value = localStorage.getItem(NAME_KEY) || '';
  } catch { /* see above */ }
  if (!ui.name.value) ui.name.value = `guest-${Math.floor(Math.random() * 9000 + 1000)}`;
  connect();
})();
