// Switchboard video room, written with the browser SDK the server serves
// at /sdk/switchboard.js (docs/sdk.md, docs/webrtc.md).
//
//   /room.html?room=NAME          a call through the server's SFU: the
//                                 camera goes up in three simulcast layers,
//                                 each other participant's video comes
//                                 down in the layer that fits its tile
//   /room.html?room=NAME&relay=1  every packet through the built-in TURN
//                                 server (turn_addr must be set)
//   /room.html?room=NAME&mode=p2p a call of two, browser to browser; the
//                                 server only carries the signaling
//
// The SDK's Room does the signaling; this page draws a tile per
// participant, the mute buttons, the active speaker and, under each
// remote video, the width being decoded and the server's simulcast layer
// (read from getStats once a second).

import { Switchboard } from '/sdk/switchboard.js';

const params = new URLSearchParams(location.search);
const roomName = params.get('room') || 'lobby';
const relay = params.get('relay') === '1';
const mode = params.get('mode') === 'p2p' ? 'p2p' : 'sfu';
// ?video=WIDTHxHEIGHT asks the camera for another size (default 1280x720:
// Chromium sends three simulcast layers from 960x540 up).
const [vw, vh] = (params.get('video') || '1280x720').split('x').map(Number);
const STATS_EVERY_MS = 1000;

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'), notice: $('notice'), tiles: $('tiles'), template: $('tile'),
  mic: $('mic'), cam: $('cam'), leave: $('leave'), mode: $('mode'), roomName: $('room-name'),
};
ui.roomName.textContent = roomName;
ui.mode.textContent = (mode === 'p2p' ? 'peer to peer' : 'through the server') + (relay ? ', relayed by TURN' : '');

function status(state, text = state) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function notice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
}

const tiles = new Map(); // participant id ("local" for this page) -> tile element

function tile(id, label) {
  let t = tiles.get(id);
  if (t) return t;
  t = ui.template.content.firstElementChild.cloneNode(true);
  t.dataset.participant = id;
  t.querySelector('.name').textContent = label;
  ui.tiles.append(t);
  tiles.set(id, t);
  return t;
}

function dropTile(id) {
  tiles.get(id)?.remove();
  tiles.delete(id);
}

function badges(id, p) {
  const t = tiles.get(id);
  if (!t || !p) return;
  const muted = [...p.tracks.values()].filter((x) => x.muted).map((x) => (x.kind === 'audio' ? 'mic off' : 'camera off'));
  t.querySelector('.badges').textContent = muted.join(', ');
}

// A participant is a connection: each tab calls on its own WebSocket, not
// on the connection the SDK shares between tabs by default.
const client = new Switchboard(location.origin, { transports: ['websocket'], outbox: false, sharedConnection: false });
let room = null;
let local = null;
let joining = false;
let left = false; // the user hung up: no rejoin

// start asks for the camera and microphone once, then joins.
let media = null;
async function start() {
  media ??= getMedia();
  await media;
  if (joining || (room && !room.closed) || left || client.state !== 'connected') return;
  joining = true;
  try {
    await join();
  } finally {
    joining = false;
  }
}

async function getMedia() {
  try {
    local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: vw }, height: { ideal: vh } } });
  } catch (err) {
    notice(`No camera or microphone (${err.name}): joining to watch only.`);
  }
  if (local) {
    const me = tile('local', 'you');
    me.dataset.local = '';
    const v = me.querySelector('video');
    v.muted = true; // never play your own microphone
    v.srcObject = local;
  }
}

async function join() {
  status('joining');
  try {
    room = await client.joinRoom(roomName, { mode, relay, stream: local ?? undefined });
  } catch (err) {
    status('failed');
    notice(`Could not join: ${err.message}`);
    return;
  }
  window.sbRoom = room; // for the browser tests and the console
  status('joined', `joined as ${room.participantId.slice(0, 8)}`);
  ui.leave.disabled = false;
  ui.mic.disabled = ui.cam.disabled = !local;
  for (const p of room.participants.values()) addRemote(p);
  room.on('participantJoined', addRemote);
  room.on('participantLeft', ({ participant }) => dropTile(participant.id));
  room.on('track', (t) => {
    const p = room.participants.get(t.participant);
    if (!p) return;
    addRemote(p);
    badges(p.id, p);
  });
  room.on('muted', ({ participant }) => badges(participant, room.participants.get(participant)));
  room.on('speakers', (ids) => {
    for (const [id, t] of tiles) {
      const speaking = ids[0] === (id === 'local' ? room.participantId : id);
      if (speaking) t.dataset.speaking = '';
      else delete t.dataset.speaking;
    }
  });
  room.on('connection', ({ pc, state }) => {
    if (state === 'failed') notice(`The ${pc} connection failed: see docs/webrtc.md (ports, webrtc_public_ip, TURN).`);
  });
  room.on('error', (err) => notice(err.message));
  room.on('closed', ({ reason }) => {
    status('left', reason === 'left' ? 'left' : `ended: ${reason}`);
    ui.mic.disabled = ui.cam.disabled = ui.leave.disabled = true;
    for (const id of [...tiles.keys()]) if (id !== 'local') dropTile(id);
    // After a lost WebSocket the page joins again once it is back; removed
    // by the server (kicked, or a media connection that failed for good),
    // it stays out.
    if (reason !== 'disconnected' && reason !== 'left') {
      left = true;
      notice(reason === 'kicked' ? 'The server removed you from the room.' : `The server ended the call: ${reason} (see docs/webrtc.md, Self-test). Reload to join again.`);
    }
  });
}
setInterval(showStats, STATS_EVERY_MS);

function addRemote(p) {
  const t = tile(p.id, p.user || p.id.slice(0, 8));
  const v = t.querySelector('video');
  if (!t.dataset.attached && p.stream) {
    // attach shows the stream and keeps the server's layer matched to the
    // tile's size.
    room.attach(p.id, v);
    t.dataset.attached = '1';
  } else if (p.stream && v.srcObject !== p.stream) {
    v.srcObject = p.stream;
  }
  badges(p.id, p);
}

// showStats writes, per remote video, the decoded width and frame count
// (data-frame-width, data-frames-decoded) and the server's layer.
async function showStats() {
  if (!room || room.closed) return;
  const pc = room.pc(room.mode === 'p2p' ? 'peer' : 'subscriber');
  if (!pc) return;
  const stats = await pc.getStats();
  stats.forEach((s) => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    for (const p of room.participants.values()) {
      const tr = [...p.tracks.values()].find((x) => x.track && x.track.id === s.trackIdentifier);
      if (!tr && room.mode !== 'p2p') continue;
      const t = tiles.get(p.id);
      if (!t) continue;
      t.dataset.frameWidth = s.frameWidth ?? 0;
      t.dataset.framesDecoded = s.framesDecoded ?? 0;
      const layer = tr && tr.layer >= 0 ? ` · layer ${'LMH'[tr.layer]}` : '';
      t.querySelector('.layer').textContent = s.frameWidth ? `${s.frameWidth}×${s.frameHeight}${layer}` : '';
    }
  });
}

function toggle(button, kind, onText, offText) {
  button.addEventListener('click', async () => {
    const muted = button.getAttribute('aria-pressed') !== 'true';
    button.setAttribute('aria-pressed', String(muted));
    button.textContent = muted ? offText : onText;
    try {
      await room.mute(kind, muted);
    } catch (err) {
      notice(err.message);
    }
  });
}
toggle(ui.mic, 'audio', 'Mute mic', 'Unmute mic');
toggle(ui.cam, 'video', 'Stop camera', 'Start camera');
ui.leave.addEventListener('click', () => {
  left = true;
  room?.leave();
});

client.on('state', (e) => {
  if (e.state === 'connected') start();
  else if (!left) status('connecting', 'reconnecting');
});
