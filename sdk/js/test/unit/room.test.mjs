// The Room's signaling state machine, against a fake RTCPeerConnection
// and a fake server link: which commands go out in which order, what the
// pushes do. The browser tests (e2e/room.test.js) check real media.

import assert from 'node:assert/strict';
import test from 'node:test';
import { Room } from '../../dist/switchboard.js';

// FakePC records what the Room does with a connection.
class FakePC {
  static all = [];
  constructor(config) {
    this.config = config;
    this.transceivers = [];
    this.localDescription = null;
    this.remoteDescription = null;
    this.candidates = [];
    this.closed = false;
    this.connectionState = 'new';
    this.n = 0;
    FakePC.all.push(this);
  }
  addTransceiver(trackOrKind, init) {
    const track = typeof trackOrKind === 'string' ? null : trackOrKind;
    const t = { sender: { track }, receiver: { track: null }, init };
    this.transceivers.push(t);
    return t;
  }
  addTrack(track) {
    const t = this.addTransceiver(track, { direction: 'sendrecv' });
    return t.sender;
  }
  removeTrack(sender) {
    sender.track = null;
  }
  getSenders() {
    return this.transceivers.map((t) => t.sender);
  }
  getTransceivers() {
    return this.transceivers;
  }
  async createOffer(opts) {
    return { type: 'offer', sdp: `offer ${++this.n}${opts?.iceRestart ? ' ice-restart' : ''}` };
  }
  async createAnswer() {
    return { type: 'answer', sdp: `answer ${++this.n}` };
  }
  async setLocalDescription(d) {
    if (d.type === 'rollback') {
      this.rolledBack = (this.rolledBack ?? 0) + 1;
      this.localDescription = null;
      this.signalingState = 'stable';
      return;
    }
    this.localDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-local-offer' : 'stable';
  }
  async setRemoteDescription(d) {
    this.remoteDescription = d;
    this.signalingState = d.type === 'offer' ? 'have-remote-offer' : 'stable';
  }
  setConfiguration(c) {
    this.config = c;
  }
  // relayed makes getStats say the selected pair goes through TURN.
  async getStats() {
    const local = { id: 'L', type: 'local-candidate', candidateType: this.relayed ? 'relay' : 'host' };
    const pair = { id: 'P', type: 'candidate-pair', localCandidateId: 'L', nominated: true, state: 'succeeded' };
    return new Map([['T', { id: 'T', type: 'transport', selectedCandidatePairId: 'P' }], ['P', pair], ['L', local]]);
  }
  // ice moves the ICE connection state, as the browser would.
  ice(state) {
    this.iceConnectionState = state;
    this.oniceconnectionstatechange?.();
  }
  async addIceCandidate(c) {
    if (!this.remoteDescription) throw new Error('no remote description');
    this.candidates.push(c);
  }
  close() {
    this.closed = true;
  }
  // gather fires a local candidate.
  gather(candidate) {
    this.onicecandidate?.({ candidate: { candidate, sdpMid: '0', sdpMLineIndex: 0 } });
  }
}

// fakeLink answers room commands like the server would.
function fakeLink(reply = {}) {
  const sent = [];
  let forgotten = false;
  const waiters = [];
  const link = {
    sent,
    get forgotten() {
      return forgotten;
    },
    hold: null, // a promise the join reply waits for
    async command(cmd) {
      sent.push(cmd);
      for (const w of waiters.splice(0)) w();
      if (cmd.command === 'room_join') {
        if (link.hold) await link.hold;
        return { participant: 'me', mode: cmd.data.mode ?? 'sfu', can_publish: true, ice_servers: [{ urls: ['turn:127.0.0.1:3478'] }], participants: [], ...reply };
      }
      if (cmd.command === 'room_offer') return cmd.data.room && (cmd.data.sdp ? { sdp: `server answer to ${cmd.data.sdp}` } : {});
      if (cmd.command === 'room_ice') return link.ice ?? { ice_servers: [{ urls: ['turn:127.0.0.1:3478'], username: 'fresh', credential: 'x' }], ice_servers_expire: Math.floor(Date.now() / 1000) + 3600 };
      return {};
    },
    forget() {
      forgotten = true;
    },
    // next waits until a command named name was sent.
    async next(name) {
      for (let i = 0; i < 200; i++) {
        const c = sent.find((x) => x.command === name);
        if (c) return c;
        await new Promise((r) => setTimeout(r, 5));
      }
      throw new Error(`no ${name} sent; sent ${sent.map((x) => x.command)}`);
    },
  };
  return link;
}

const tick = () => new Promise((r) => setTimeout(r, 10));
const env = { RTCPeerConnection: FakePC };

function track(kind, id = `${kind}-1`) {
  return { kind, id, enabled: true, addEventListener() {} };
}

test('SFU join: room_join, ICE servers and relay policy from the reply, participants listed', async () => {
  FakePC.all = [];
  const link = fakeLink({ participants: [{ participant: 'bob', user: 'Bob', tracks: [{ participant: 'bob', track: 'bob:v', kind: 'video', source: 'camera' }] }] });
  const room = new Room('standup', { relay: true, codec: 'vp8', env }, link);
  await room.join();
  assert.deepEqual(link.sent[0], { command: 'room_join', data: { room: 'standup', codec: 'vp8' } });
  assert.equal(room.participantId, 'me');
  assert.equal(FakePC.all.length, 1, 'only the subscribing connection before publishing');
  assert.deepEqual(FakePC.all[0].config, { iceServers: [{ urls: ['turn:127.0.0.1:3478'] }], iceTransportPolicy: 'relay' });
  const bob = room.participants.get('bob');
  assert.equal(bob.user, 'Bob');
  assert.equal(bob.tracks.get('bob:v').source, 'camera');
});

test('pushes before the join reply wait for it; the server offer is answered, then candidates go out', async () => {
  FakePC.all = [];
  const link = fakeLink();
  let release;
  link.hold = new Promise((r) => (release = r));
  const room = new Room('r', { env }, link);
  const joined = room.join();
  await tick();
  room.push('offer', { sdp: 'server offer 1' }); // before the reply
  release();
  await joined;
  const answer = await link.next('room_answer');
  const sub = FakePC.all[0];
  assert.deepEqual(sub.remoteDescription, { type: 'offer', sdp: 'server offer 1' });
  assert.deepEqual(answer.data, { room: 'r', sdp: sub.localDescription.sdp });
  sub.gather('candidate:1 1 udp 1 127.0.0.1 5000 typ host');
  const cand = await link.next('room_candidate');
  assert.equal(cand.data.target, 'subscriber');
  assert.equal(cand.data.candidate, 'candidate:1 1 udp 1 127.0.0.1 5000 typ host');
});

test('a local candidate waits until the server has the description', async () => {
  FakePC.all = [];
  const link = fakeLink();
  const room = new Room('r', { env }, link);
  await room.join();
  const sub = FakePC.all[0];
  sub.gather('candidate:early'); // no answer sent yet
  await tick();
  assert.equal(link.sent.filter((c) => c.command === 'room_candidate').length, 0);
  room.push('offer', { sdp: 'o' });
  await link.next('room_answer');
  const cand = await link.next('room_candidate');
  assert.equal(cand.data.candidate, 'candidate:early');
  assert.ok(link.sent.indexOf(cand) > link.sent.findIndex((c) => c.command === 'room_answer'));
});

test('publishing: room_publish per track, simulcast video, room_offer, answer applied', async () => {
  FakePC.all = [];
  const link = fakeLink();
  const cam = track('video');
  const mic = track('audio');
  const stream = { getTracks: () => [cam, mic] };
  const room = new Room('r', { env, stream }, link);
  await room.join();
  const pub = FakePC.all[1];
  const names = link.sent.map((c) => c.command);
  assert.deepEqual(names, ['room_join', 'room_publish', 'room_publish', 'room_offer']);
  assert.deepEqual(link.sent[1].data, { room: 'r', track: 'video-1', source: 'camera' });
  const video = pub.transceivers.find((t) => t.sender.track === cam);
  assert.deepEqual(video.init.sendEncodings.map((e) => [e.rid, e.scaleResolutionDownBy]), [['q', 4], ['h', 2], ['f', 1]]);
  assert.equal(pub.transceivers.find((t) => t.sender.track === mic).init.sendEncodings, undefined);
  assert.deepEqual(pub.remoteDescription, { type: 'answer', sdp: `server answer to ${pub.localDescription.sdp}` });

  // mute: the track is disabled here and the server told.
  await room.mute('audio', true);
  assert.equal(mic.enabled, false);
  assert.equal(room.isMuted('audio'), true);
  assert.deepEqual(link.sent.at(-1), { command: 'room_mute', data: { room: 'r', track: 'audio', muted: true } });

  // A layer preference for a remote video.
  await room.setLayer('bob:v', { maxLayer: 0 });
  assert.deepEqual(link.sent.at(-1), { command: 'room_subscribe', data: { room: 'r', track: 'bob:v', max_layer: 0 } });
  await room.setLayer('bob:v', { width: 320.4, height: 180 });
  assert.deepEqual(link.sent.at(-1), { command: 'room_subscribe', data: { room: 'r', track: 'bob:v', max_width: 320, max_height: 180 } });

  // unpublish: room_unpublish, then a new offer without the track.
  await room.unpublish(cam);
  const last = link.sent.slice(-2).map((c) => c.command);
  assert.deepEqual(last, ['room_unpublish', 'room_offer']);
  assert.equal(link.sent.at(-2).data.track, 'me:video-1');
});

test('room events: participants, tracks, mute, speakers, layer, leave, kick', async () => {
  FakePC.all = [];
  const link = fakeLink();
  const room = new Room('r', { env }, link);
  await room.join();
  const seen = [];
  for (const e of ['participantJoined', 'participantLeft', 'muted', 'speakers', 'layer', 'trackEnded', 'closed']) {
    room.on(e, (d) => seen.push(e));
  }
  room.push('participant_joined', { participant: 'bob', user: 'Bob' });
  room.push('track_published', { participant: 'bob', track: 'bob:v', kind: 'video' });
  room.push('track_muted', { participant: 'bob', track: 'bob:v', muted: true });
  assert.equal(room.participants.get('bob').tracks.get('bob:v').muted, true);
  room.push('speakers', { speakers: ['bob'] });
  assert.deepEqual(room.speakers, ['bob']);
  room.push('layer', { track: 'bob:v', layer: 1 });
  assert.equal(room.participants.get('bob').tracks.get('bob:v').layer, 1);
  room.push('participant_left', { participant: 'bob', reason: 'left' });
  assert.equal(room.participants.has('bob'), false);
  // Its own tracks come back to the publisher: not a participant.
  room.push('track_published', { participant: 'me', track: 'me:v', kind: 'video' });
  assert.equal(room.participants.has('me'), false);
  let reason = '';
  room.on('closed', (e) => (reason = e.reason));
  room.push('kicked', { room: 'r', reason: 'subscriber connection failed' });
  assert.equal(room.closed, true);
  assert.equal(reason, 'subscriber connection failed');
  assert.equal(link.forgotten, true);
  assert.ok(FakePC.all.every((pc) => pc.closed));
  assert.deepEqual(seen, ['participantJoined', 'muted', 'speakers', 'layer', 'trackEnded', 'participantLeft', 'closed']);
  room.push('participant_joined', { participant: 'carol' }); // ignored once closed
  assert.equal(room.participants.has('carol'), false);
});

test('P2P: the newcomer offers; the answer and the peer candidates apply in order', async () => {
  FakePC.all = [];
  const link = fakeLink({ mode: 'p2p', participants: [{ participant: 'bob', tracks: [] }] });
  const cam = track('video');
  const room = new Room('pair', { env, mode: 'p2p', stream: { getTracks: () => [cam] } }, link);
  const cands = [];
  room.on('error', (e) => cands.push(e));
  await room.join();
  assert.equal(FakePC.all.length, 1, 'one connection, to the peer');
  const pc = FakePC.all[0];
  const offer = link.sent.find((c) => c.command === 'room_offer');
  assert.equal(offer.data.sdp, pc.localDescription.sdp);
  assert.ok(pc.transceivers.some((t) => t.sender.track === cam));
  assert.ok(pc.transceivers.some((t) => t.init?.direction === 'recvonly'), 'audio received though none is sent');
  // A peer candidate before its answer waits for it.
  room.push('candidate', { from: 'bob', candidate: 'candidate:peer', sdpMid: '0', sdpMLineIndex: 0 });
  await tick();
  assert.equal(pc.candidates.length, 0);
  room.push('answer', { from: 'bob', sdp: 'peer answer' });
  await tick();
  assert.deepEqual(pc.remoteDescription, { type: 'answer', sdp: 'peer answer' });
  assert.deepEqual(pc.candidates.map((c) => c.candidate), ['candidate:peer']);
  // Own candidates go to the peer through the server, without a target.
  pc.gather('candidate:mine');
  const c = await link.next('room_candidate');
  assert.equal(c.data.target, undefined);
  assert.deepEqual(cands, []);
});

test('P2P: the one already there answers the newcomer\'s offer', async () => {
  FakePC.all = [];
  const link = fakeLink({ mode: 'p2p' });
  const mic = track('audio');
  const room = new Room('pair', { env, mode: 'p2p', stream: { getTracks: () => [mic] } }, link);
  await room.join();
  assert.equal(FakePC.all.length, 0, 'alone: no connection yet');
  room.push('participant_joined', { participant: 'bob' });
  room.push('offer', { from: 'bob', sdp: 'peer offer' });
  const answer = await link.next('room_answer');
  const pc = FakePC.all[0];
  assert.deepEqual(pc.remoteDescription, { type: 'offer', sdp: 'peer offer' });
  assert.equal(answer.data.sdp, pc.localDescription.sdp);
  assert.ok(pc.transceivers.some((t) => t.sender.track === mic), 'the microphone goes in the answer');
  room.push('participant_left', { participant: 'bob', reason: 'left' });
  assert.equal(pc.closed, true, 'the peer connection ends with the peer');
});

test('a refused publish leaves the client in the room, receiving, with an error event', async () => {
  FakePC.all = [];
  const link = fakeLink({ can_publish: false });
  const errors = [];
  const room = new Room('r', { env, stream: { getTracks: () => [track('video')] } }, link);
  await room.join();
  room.on('error', (e) => errors.push(e.message)); // after the join, as with client.joinRoom
  await tick();
  assert.equal(room.closed, false);
  assert.equal(room.canPublish, false);
  assert.match(errors[0], /no permission to publish/);
  assert.equal(link.sent.some((c) => c.command === 'room_offer'), false);
});

test('ICE restarts: the publisher offers with iceRestart on "failed", the subscriber asks the server (room_ice restart), "disconnected" waits iceRestartDelay, and restarts stop after 3 in a row', async () => {
  FakePC.all = [];
  const link = fakeLink();
  const room = new Room('r', { env, iceRestartDelay: 1, stream: { getTracks: () => [track('audio')] } }, link);
  const restarts = [];
  room.on('iceRestart', (e) => restarts.push(`${e.pc} ${e.reason}`));
  await room.join();
  await link.next('room_offer');
  await tick();
  const [sub, pub] = FakePC.all;
  pub.ice('failed');
  await tick();
  const offers = link.sent.filter((c) => c.command === 'room_offer');
  assert.equal(offers.length, 2);
  assert.match(offers[1].data.sdp, /ice-restart/);
  assert.match(pub.remoteDescription.sdp, /ice-restart/, 'the server\'s answer to the restart is applied');
  sub.ice('disconnected');
  const ice = await link.next('room_ice');
  assert.deepEqual(ice.data, { room: 'r', restart: 'subscriber' });
  await tick();
  assert.equal(sub.config.iceServers[0].username, 'fresh', 'the fresh ICE servers are applied');
  assert.equal(pub.config.iceServers[0].username, 'fresh');
  // Three restarts in a row without a connection in between, then none.
  for (let i = 0; i < 4; i++) {
    pub.ice('failed');
    await tick();
  }
  assert.equal(restarts.filter((r) => r === 'publisher failed').length, 3);
  pub.ice('connected');
  pub.ice('failed');
  await tick();
  assert.equal(restarts.filter((r) => r === 'publisher failed').length, 4, 'counted again once connected');
  assert.deepEqual(restarts.slice(0, 2), ['publisher failed', 'subscriber disconnected']);
  await room.leave();
});

test('TURN renewal: fresh ICE servers before the credentials expire, applied to every connection; relayed connections restart ICE', async () => {
  FakePC.all = [];
  const link = fakeLink({ ice_servers_expire: Math.floor(Date.now() / 1000) - 1 }); // already due
  const room = new Room('r', { env, iceRestartDelay: 1, stream: { getTracks: () => [track('video')] } }, link);
  const events = [];
  room.on('iceRestart', (e) => events.push(`${e.pc} ${e.reason}`));
  room.on('iceServers', (e) => events.push(`servers ${e.iceServers[0].username} ${e.expires > Date.now() / 1000}`));
  FakePC.prototype.relayed = true;
  try {
    await room.join();
    await link.next('room_ice');
    for (let i = 0; i < 50 && events.length < 3; i++) await tick();
  } finally {
    delete FakePC.prototype.relayed;
  }
  const ice = link.sent.filter((c) => c.command === 'room_ice');
  assert.equal(ice.length, 1, 'one renewal: the next is an hour away');
  assert.deepEqual(ice[0].data, { room: 'r', restart: 'subscriber' }, 'the relayed subscriber restarts');
  assert.deepEqual(events, ['servers fresh true', 'subscriber renewal', 'publisher renewal']);
  const offers = link.sent.filter((c) => c.command === 'room_offer');
  assert.match(offers.at(-1).data.sdp, /ice-restart/);
  for (const pc of FakePC.all) assert.equal(pc.config.iceServers[0].username, 'fresh');
  await room.leave();
});

test('P2P: offers that cross (an ICE restart on both sides) are settled: the greater id rolls back, answers, and offers again', async () => {
  FakePC.all = [];
  const link = fakeLink({ mode: 'p2p', participants: [{ participant: 'alice', tracks: [] }] }); // "me" > "alice"
  const room = new Room('pair', { env, mode: 'p2p', stream: { getTracks: () => [track('audio')] } }, link);
  await room.join();
  const pc = FakePC.all[0];
  assert.equal(pc.signalingState, 'have-local-offer');
  room.push('offer', { from: 'alice', sdp: 'crossing offer' });
  const answer = await link.next('room_answer');
  assert.equal(pc.rolledBack, 1);
  assert.match(answer.data.sdp, /^answer/);
  assert.deepEqual(pc.remoteDescription, { type: 'offer', sdp: 'crossing offer' });
  for (let i = 0; i < 50 && link.sent.filter((c) => c.command === 'room_offer').length < 2; i++) await tick();
  assert.equal(link.sent.filter((c) => c.command === 'room_offer').length, 2, 'offered again after answering');
  await room.leave();

  // The smaller id keeps its offer: the crossing one is left for the peer to drop.
  FakePC.all = [];
  const link2 = fakeLink({ participant: 'alice', mode: 'p2p', participants: [{ participant: 'me', tracks: [] }] });
  const room2 = new Room('pair', { env, mode: 'p2p' }, link2);
  await room2.join();
  room2.push('offer', { from: 'me', sdp: 'crossing offer' });
  await tick();
  assert.equal(link2.sent.some((c) => c.command === 'room_answer'), false);
  assert.equal(FakePC.all[0].rolledBack, undefined);
  await room2.leave();
});
