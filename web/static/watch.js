// Plays a live stream with sub-second latency over WHEP
// (docs/streaming.md): a receive-only PeerConnection whose offer is
// POSTed to /whep/live/NAME. When WHEP fails (no WebRTC on the server, a
// codec the browser cannot receive, a network that blocks it) the page
// falls back to LL-HLS (/hls/live/NAME/index.m3u8) with hls.js, a few
// seconds behind. ?mode=hls forces LL-HLS. Beside the video, a chat on
// the channel "stream-chat/live/NAME" through the browser SDK.

import { Switchboard } from '/sdk/switchboard.js';
import { gathered, iceServers, statusLine } from './whip-common.js';

const $ = (id) => document.getElementById(id);
const ui = { status: $('status'), notice: $('notice'), video: $('video'), name: $('name'), message: $('message'),
  composer: $('composer'), messages: $('messages'), title: $('stream-name') };

const q = new URLSearchParams(location.search);
const stream = q.get('stream') || '';
const path = stream.includes('/') ? stream : `live/${stream}`;
const key = q.get('key') || '';
ui.title.textContent = path;

const { setStatus, notice } = statusLine(ui);

const authHeaders = key ? { Authorization: `Bearer ${key}` } : {};

// whep plays over WebRTC; it resolves once connected and rejects when the
// server refuses or the connection does not come up.
async function whep() {
  const pc = new RTCPeerConnection({
    iceServers: await iceServers(`/whep/${path}`),
    iceTransportPolicy: q.get('relay') === '1' ? 'relay' : 'all',
  });
  window.whepPC = pc; // for tests
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const ms = new MediaStream();
  pc.addEventListener('track', (e) => {
    ms.addTrack(e.track);
    ui.video.srcObject = ms;
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc, 2000);
  const res = await fetch(`/whep/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', ...authHeaders }, body: pc.localDescription.sdp });
  if (res.status !== 201) {
    pc.close();
    throw new Error(`${res.status}: ${(await res.text()).trim()}`);
  }
  const resource = new URL(res.headers.get('Location'), location.href).href;
  await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
  addEventListener('pagehide', () => fetch(resource, { method: 'DELETE', keepalive: true }).catch(() => {}));
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the WebRTC connection did not come up')), 10000);
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') { clearTimeout(t); resolve(); }
      if (pc.connectionState === 'failed') { clearTimeout(t); reject(new Error('the WebRTC connection failed')); }
    });
  });
  pc.addEventListener('connectionstatechange', () => {
    if (['failed', 'closed', 'disconnected'].includes(pc.connectionState)) setStatus('waiting', 'stream ended or connection lost');
  });
  ui.status.dataset.mode = 'whep';
  setStatus('playing', 'live (WebRTC)');
}

// hls plays over LL-HLS with hls.js (or natively where the browser can).
function hls() {
  const src = `/hls/${path}/index.m3u8${key ? `?key=${encodeURIComponent(key)}` : ''}`;
  ui.status.dataset.mode = 'hls';
  if (window.Hls && window.Hls.isSupported()) {
    // Up to 1.5x speed to get back to the live edge after a stall: at hls.js's
    // default (1x) a player that fell behind once stays behind (docs/streaming.md).
    const h = new window.Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 });
    window.hlsPlayer = h; // for tests
    h.on(window.Hls.Events.MANIFEST_PARSED, () => setStatus('playing', 'live (LL-HLS)'));
    h.on(window.Hls.Events.ERROR, (_, d) => { if (d.fatal) setStatus('failed', `LL-HLS: ${d.details}`); });
    h.loadSource(src);
    h.attachMedia(ui.video);
  } else if (ui.video.canPlayType('application/vnd.apple.mpegurl')) {
    ui.video.src = src;
    setStatus('playing', 'live (HLS)');
  } else {
    setStatus('failed', 'this browser plays neither WebRTC nor HLS');
  }
}

if (!stream) {
  setStatus('failed', 'no stream');
  notice('Give the stream in the address: watch.html?stream=NAME');
} else if (q.get('mode') === 'hls') {
  hls();
} else {
  whep().catch((err) => {
    notice(`WebRTC playback failed (${err.message}); trying LL-HLS`);
    hls();
  });
}

// Chat ------------------------------------------------------------------

const CHANNEL = `stream-chat/${path}`;
const client = new Switchboard(location.origin, { sharedConnection: false });

function show(m) {
  if (!m || typeof m.text !== 'string') return;
  const li = document.createElement('li');
  const who = document.createElement('b');
  who.textContent = `${String(m.user || 'someone').slice(0, 40)}: `;
  li.append(who, document.createTextNode(m.text.slice(0, 500)));
  ui.messages.append(li);
  while (ui.messages.children.length > 200) ui.messages.firstChild.remove();
}

client.subscribe(CHANNEL, { onPublication: (p) => show(p.data) });

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.message.value.trim();
  if (!text) return;
  client.publish(CHANNEL, { user: ui.name.value.trim() || 'viewer', text }).catch((err) => notice(`not sent: ${err.message}`));
  ui.message.value = '';
});
