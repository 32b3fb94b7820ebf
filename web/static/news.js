// Switchboard live news.
//
// A feed read with the browser's own EventSource and nothing else: no
// WebSocket, no library, and no reconnection code. What this page relies on:
//
//   * GET sse?channel=news answers a text/event-stream. The browser keeps it
//     open and, when it breaks, reconnects by itself after the "retry" delay
//     the server hints, sending the id of the last event it received as the
//     Last-Event-ID header.
//   * event "connected": {"client":"<id>","channels":[{"channel","offset","epoch"}]}
//     opens every stream (and every reconnected one).
//   * default events (onmessage): one per publication, with the same JSON as
//     a WebSocket push: {"channel":"news","data":<JSON>,"offset":N}. Each
//     carries an id covering the stream's position: after a reconnect the
//     server sends exactly the publications the page missed, once each.
//   * event "unrecovered": {"channel","offset","epoch"}: the server could not
//     send what was missed (its history no longer holds it, or the server
//     restarted). The page's state is stale: reload it (here, the page).
//   * event "disconnect": {"code","reason"}: the server asks the page not to
//     come back; it must call close(), or EventSource would reconnect.
//   * An answer other than 200 text/event-stream (a malformed request) makes
//     EventSource give up for good: readyState becomes CLOSED.

'use strict';

(() => {
  const MAX_SHOWN = 200; // items kept on screen
  const RELOAD_AFTER_MS = 2000; // time to read the "reloading" notice

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'), feed: $('feed'), empty: $('empty'), notice: $('notice'),
    publish: $('publish'), apikey: $('apikey'), title: $('title'), result: $('publish-result'),
  };

  let lastOffset = 0; // offset of the newest item shown, 0 before the first
  let streams = 0; // connected events seen: 1 + the reconnects

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
    ui.feed.prepend(li);
    ui.empty.hidden = true;
    while (ui.feed.children.length > MAX_SHOWN) ui.feed.lastElementChild.remove();
  }

  const es = new EventSource('sse?channel=news');

  es.addEventListener('connected', (e) => {
    const info = JSON.parse(e.data);
    streams++;
    ui.status.dataset.client = info.client;
    ui.status.dataset.streams = String(streams);
    ui.status.title = `client ${info.client}`;
    if (lastOffset === 0) lastOffset = info.channels[0].offset;
    setStatus('connected', streams > 1 ? 'reconnected' : 'connected');
  });

  es.onmessage = (e) => {
    const push = JSON.parse(e.data);
    // The server guarantees offsets one by one; say so if that ever fails.
    if (lastOffset !== 0 && push.offset !== lastOffset + 1) {
      showNotice(`Unexpected item #${push.offset} after #${lastOffset}.`);
    }
    lastOffset = push.offset;
    addItem(push);
  };

  es.addEventListener('unrecovered', () => {
    setStatus('reconnecting', 'reloading');
    showNotice('Some news published while this page was offline could not be recovered. Reloading…');
    es.close();
    setTimeout(() => location.reload(), RELOAD_AFTER_MS);
  });

  es.addEventListener('disconnect', (e) => {
    const d = JSON.parse(e.data);
    es.close();
    setStatus('disconnected');
    showNotice(`Disconnected by the server (${d.code} ${d.reason}).`);
  });

  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      setStatus('disconnected');
    } else if (ui.status.dataset.state !== 'disconnected') {
      setStatus('reconnecting'); // the browser retries by itself
    }
  };

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
})();
