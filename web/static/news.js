// Switchboard live news, read with the browser SDK the server serves at
// /sdk/switchboard.js (docs/sdk.md), over Server-Sent Events only.
//
// A feed only receives, and SSE is how a page receives where WebSocket is
// blocked (some proxies) or not worth it: so this page asks the SDK for
// the "sse" transport alone. What the SDK adds over a bare EventSource:
//
//   * the stream resumes from the id of the last event it delivered, on
//     the same node or another one, and each item is delivered once, in
//     offset order (a repeat is dropped, never shown twice);
//   * when what was missed cannot be sent (history no longer holds it, the
//     server restarted and lost it), onGap says so: this page shows a
//     notice and a marker in the feed where items are missing, and goes on
//     with what comes next. A real app would reload the feed from its
//     backend there;
//   * a server that says not to come back (close codes 4500-4999) is not
//     reconnected to.

import { Switchboard } from '/sdk/switchboard.js';

const MAX_SHOWN = 200; // items kept on screen

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), feed: $('feed'), empty: $('empty'), notice: $('notice'),
  publish: $('publish'), apikey: $('apikey'), title: $('title'), result: $('publish-result'),
};

let streams = 0; // connections: 1 + the reconnects

// setStatus shows the connection state; data-state is for styling and
// for tests.
function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text || state;
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}

function prepend(li) {
  ui.feed.prepend(li);
  ui.empty.hidden = true;
  while (ui.feed.children.length > MAX_SHOWN) ui.feed.lastElementChild.remove();
}

// addItem shows one publication at the top. Text goes in with
// textContent, never as HTML.
function addItem(push) {
  const li = document.createElement('li');
  li.dataset.offset = String(push.offset);
  const d = push.data;
  const title = document.createElement('div');
  title.className = 'title';
  if (d && typeof d === 'object' && !Array.isArray(d) && ('title' in d || 'body' in d)) {
    title.textContent = d.title === undefined ? '' : String(d.title);
    li.append(title);
    if (d.body !== undefined) {
      const body = document.createElement('div');
      body.className = 'body';
      body.textContent = String(d.body);
      li.append(body);
    }
  } else {
    title.textContent = typeof d === 'string' ? d : JSON.stringify(d);
    li.append(title);
  }
  const meta = document.createElement('div');
  meta.className = 'meta';
  meta.textContent = `#${push.offset} · ${new Date().toLocaleTimeString()}`;
  li.append(meta);
  prepend(li);
}

// addGap marks the place in the feed where items are missing.
function addGap() {
  const li = document.createElement('li');
  li.className = 'gap';
  li.textContent = 'Items published here could not be recovered.';
  prepend(li);
}

// The page shows its own SSE stream (the status counts its streams), so it
// does not share one with the other tabs of the origin.
const client = new Switchboard(location.origin, { transports: ['sse'], sharedConnection: false });

client.on('state', (e) => {
  if (ui.status.dataset.state === 'disconnected') return; // stopped for good
  if (e.state === 'connected') {
    streams++;
    ui.status.dataset.client = client.clientId || '';
    ui.status.dataset.streams = String(streams);
    ui.status.title = `client ${client.clientId}`;
    setStatus('connected', streams > 1 ? 'reconnected' : 'connected');
  } else if (e.state === 'disconnected' && e.code >= 4500 && e.code <= 4999) {
    setStatus('disconnected');
    showNotice(`Disconnected by the server (${e.code} ${e.reason || ''}).`);
  } else {
    setStatus('reconnecting'); // the SDK retries by itself
  }
});

client.subscribe('news', {
  onPublication: (p) => addItem(p),
  onGap: (g) => {
    showNotice(g.reason === 'reset'
      ? 'The server lost its recent history: some news may be missing.'
      : 'Some news published while this page was offline could not be recovered.');
    addGap();
  },
});

// The demo publish form: the same call a backend makes.
ui.publish.addEventListener('submit', async (e) => {
  e.preventDefault();
  ui.result.textContent = 'publishing…';
  try {
    const res = await fetch('api/publish', {
      method: 'POST',
      headers: { Authorization: `apikey ${ui.apikey.value}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel: 'news', data: { title: ui.title.value } }),
    });
    const answer = await res.json();
    if (!res.ok) throw new Error(answer.error ? `${answer.error.code} ${answer.error.message}` : `HTTP ${res.status}`);
    ui.result.textContent = `published as #${answer.result.offset}`;
    ui.title.value = '';
  } catch (err) {
    ui.result.textContent = `not published: ${err.message}`;
  }
});

for (const el of document.querySelectorAll('#howto .origin')) el.textContent = location.origin;
