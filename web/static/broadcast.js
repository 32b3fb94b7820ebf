// Publishes the camera and microphone to a live stream over WHIP
// (docs/streaming.md): one PeerConnection, its offer POSTed to
// /whip/live/NAME with the stream key as a bearer token; the answer comes
// back with a session URL (Location) that a DELETE ends. The stream name,
// key and codec may be given in the query: ?stream=NAME&key=KEY&codec=h264.

import { gathered, iceServers, statusLine } from './whip-common.js';

const $ = (id) => document.getElementById(id);
const ui = { status: $('status'), notice: $('notice'), form: $('form'), stream: $('stream'), key: $('key'),
  codec: $('codec'), start: $('start'), stop: $('stop'), preview: $('preview'), link: $('watch-link') };

const q = new URLSearchParams(location.search);
ui.stream.value = q.get('stream') || '';
ui.key.value = q.get('key') || '';
ui.codec.value = q.get('codec') || '';

let pc = null;
let media = null;
let resource = null; // the session URL
let key = '';

const { setStatus, notice } = statusLine(ui);

async function start() {
  notice('');
  setStatus('starting', 'starting…');
  ui.start.disabled = true;
  const name = ui.stream.value.trim();
  key = ui.key.value.trim();
  try {
    media = media || await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
    ui.preview.srcObject = media;
    pc = new RTCPeerConnection({
      iceServers: await iceServers(`/whip/live/${encodeURIComponent(name)}`),
      iceTransportPolicy: q.get('relay') === '1' ? 'relay' : 'all',
    });
    window.whipPC = pc; // for tests and curious developers
    for (const track of media.getTracks()) {
      const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
      const want = ui.codec.value;
      if (track.kind === 'video' && want && tr.setCodecPreferences) {
        const caps = RTCRtpSender.getCapabilities('video').codecs;
        const first = caps.filter((c) => c.mimeType.toLowerCase() === `video/${want}`);
        if (first.length) tr.setCodecPreferences([...first, ...caps.filter((c) => !first.includes(c))]);
      }
    }
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') setStatus('live', `live: ${name}`);
      if (pc.connectionState === 'failed') { setStatus('failed', 'connection failed'); stop(); }
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 2000);
    const headers = { 'Content-Type': 'application/sdp' };
    if (key) headers.Authorization = `Bearer ${key}`;
    const res = await fetch(`/whip/live/${encodeURIComponent(name)}`, { method: 'POST', headers, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error(`${res.status}: ${(await res.text()).trim()}`);
    resource = new URL(res.headers.get('Location'), location.href).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    ui.stop.disabled = false;
    ui.link.href = `watch.html?stream=${encodeURIComponent(name)}`;
    ui.link.textContent = `watch.html?stream=${name}`;
  } catch (err) {
    notice(`Could not go live: ${err.message}`);
    setStatus('failed', 'failed');
    await stop(false);
  }
}

async function stop(ended = true) {
  if (resource) {
    const headers = key ? { Authorization: `Bearer ${key}` } : {};
    fetch(resource, { method: 'DELETE', headers }).catch(() => {});
    resource = null;
  }
  if (pc) pc.close();
  pc = null;
  ui.start.disabled = false;
  ui.stop.disabled = true;
  if (ended) setStatus('ended');
}

ui.form.addEventListener('submit', (e) => { e.preventDefault(); start(); });
ui.stop.addEventListener('click', () => stop());
if (q.get('autostart') === '1' && ui.stream.value) start();
