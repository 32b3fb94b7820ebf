// Calls: a room joined with client.joinRoom. The Room runs the signaling
// of docs/protocol.md over the client's WebSocket: in an SFU room one
// PeerConnection publishes (the browser offers) and one subscribes (the
// server offers), so neither side ever has to settle an offer collision;
// in a P2P room (two participants) one PeerConnection joins the peers
// and the server only relays the offers, answers and candidates.

import { Emitter } from "./emitter.js";

/** RoomOptions configures client.joinRoom. Every field is optional. */
export interface RoomOptions {
  /** mode: "sfu" (default) forwards media through the server; "p2p" connects the two participants of a room of two directly. */
  mode?: "sfu" | "p2p";
  /** codec: the video codec to put first when this join creates the room ("vp8", "vp9", "h264"). */
  codec?: string;
  /** stream: local tracks to publish at once (a getUserMedia stream). More can follow with publish(). */
  stream?: MediaStream;
  /** relay: send every packet through the TURN server of the join reply (iceTransportPolicy "relay"). */
  relay?: boolean;
  /** simulcast: send video as three layers (quarter, half and full size) in an SFU room. Default true. */
  simulcast?: boolean;
  /** iceServers replaces the ICE servers of the join reply (they are then never renewed). */
  iceServers?: RTCIceServer[];
  /**
   * iceRestartDelay: how long a connection may stay ICE "disconnected"
   * before the Room restarts ICE on it, in ms (a short outage mends
   * itself). "failed" restarts at once. Default 2000.
   */
  iceRestartDelay?: number;
  /** env replaces RTCPeerConnection (tests). */
  env?: { RTCPeerConnection?: typeof RTCPeerConnection; ResizeObserver?: any };
}

/** RoomEvents are the events of a Room. */
export interface RoomEvents extends Record<string, unknown> {
  /** participantJoined: someone entered the room. */
  participantJoined: RemoteParticipant;
  /** participantLeft: someone left (or was removed); their tracks ended. */
  participantLeft: { participant: RemoteParticipant; reason: string };
  /** track: a remote track arrived (its participant is known). */
  track: RemoteTrack;
  /** trackEnded: a remote track ended. */
  trackEnded: RemoteTrack;
  /** muted: a remote participant muted or unmuted a track. */
  muted: { participant: string; track: string; muted: boolean };
  /** speakers: the participants speaking now, loudest first. */
  speakers: string[];
  /** layer: the simulcast layer (0 low, 1 medium, 2 high) the server now forwards of a remote video. */
  layer: { track: string; layer: number };
  /** connection: the state of a PeerConnection ("publisher", "subscriber" or "peer"). */
  connection: { pc: "publisher" | "subscriber" | "peer"; state: RTCPeerConnectionState };
  /**
   * closed: the room is over for this client: reason "left", "kicked",
   * "publisher connection failed" or "subscriber connection failed" (the
   * server removed it), or "disconnected" (the WebSocket was lost).
   */
  closed: { reason: string };
  /**
   * iceRestart: the Room restarts ICE on a connection: its path broke
   * ("disconnected" for iceRestartDelay, or "failed"), or its TURN
   * credentials are about to expire while it is relayed ("renewal").
   */
  iceRestart: { pc: "publisher" | "subscriber" | "peer"; reason: "disconnected" | "failed" | "renewal" };
  /** iceServers: fresh ICE servers (TURN credentials) were applied; expires is their new expiry (Unix seconds, 0: never). */
  iceServers: { iceServers: RTCIceServer[]; expires: number };
  /** error: a signaling step failed; the room goes on. */
  error: Error;
}

/** RemoteTrack is a track of another participant. */
export interface RemoteTrack {
  /** id is the server's track id ("participant:track") in an SFU room, the browser's track id in a P2P room. */
  id: string;
  participant: string;
  kind: "audio" | "video";
  /** track is the media, once it arrived. */
  track: MediaStreamTrack | null;
  muted: boolean;
  /** layer is the simulcast layer the server says it forwards (-1: not known). */
  layer: number;
  /** source ("camera", "microphone", "screen", ...) and name, as the publisher described the track. */
  source?: string;
  name?: string;
}

/** RemoteParticipant is another participant of the room. */
export interface RemoteParticipant {
  id: string;
  user: string;
  /** tracks by id. */
  tracks: Map<string, RemoteTrack>;
  /** stream holds the participant's received tracks, ready for a video element's srcObject. */
  stream: MediaStream | null;
}

/** RoomLink is what a Room needs of its client. */
export interface RoomLink {
  /** command sends a command and resolves with its result. */
  command(cmd: Record<string, unknown>): Promise<any>;
  /** forget tells the client the room is over. */
  forget(): void;
}

type PCName = "publisher" | "subscriber" | "peer";

// Simulcast layers, low to high: Chromium's usual rid names.
const LAYERS: RTCRtpEncodingParameters[] = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/**
 * Signal is one PeerConnection with its candidate queues: local candidates
 * wait until the server has the description they belong to, remote ones
 * until the remote description is set.
 */
class Signal {
  readonly pc: RTCPeerConnection;
  /** restarts: ICE restarts since the connection was last connected. */
  restarts = 0;
  /** restartTimer: a "disconnected" that waits out iceRestartDelay. */
  restartTimer: any = 0;
  /** reoffer: our offer was rolled back for the peer's (P2P): offer again after answering. */
  reoffer = false;
  /** answers counts the answers this connection gave to the server's offers. */
  answers = 0;
  private ready = false; // the other side has our description
  private outbox: RTCIceCandidate[] = [];
  private inbox: RTCIceCandidateInit[] = [];
  /** chain serialises this connection's negotiation steps. */
  chain: Promise<unknown> = Promise.resolve();

  constructor(
    PC: typeof RTCPeerConnection,
    config: RTCConfiguration,
    private readonly send: (c: RTCIceCandidate) => void,
  ) {
    this.pc = new PC(config);
    this.pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      if (this.ready) this.send(e.candidate);
      else this.outbox.push(e.candidate);
    };
  }

  /** delivered: the other side has our description; queued candidates go out. */
  delivered(): void {
    this.ready = true;
    for (const c of this.outbox.splice(0)) this.send(c);
  }

  async remote(desc: RTCSessionDescriptionInit): Promise<void> {
    await this.pc.setRemoteDescription(desc);
    for (const c of this.inbox.splice(0)) await this.pc.addIceCandidate(c).catch(() => {});
  }

  async candidate(c: RTCIceCandidateInit): Promise<void> {
    if (!this.pc.remoteDescription) {
      this.inbox.push(c);
      return;
    }
    await this.pc.addIceCandidate(c).catch(() => {});
  }

  /** run queues step after the connection's earlier steps. */
  run<T>(step: () => Promise<T>): Promise<T> {
    const p = this.chain.then(step, step);
    this.chain = p.catch(() => {});
    return p;
  }
}

/**
 * Room is one call. Get one from client.joinRoom; listen with on(); call
 * leave() to hang up.
 */
export class Room {
  readonly name: string;
  /** participantId is this client's id in the room. */
  participantId = "";
  /** mode is the room's mode, as the server decided. */
  mode: "sfu" | "p2p" = "sfu";
  /** canPublish: the server lets this client publish. */
  canPublish = false;
  /** iceServers are those of the join reply (or the options). */
  iceServers: RTCIceServer[] = [];
  /** participants are the others in the room, by id. */
  readonly participants = new Map<string, RemoteParticipant>();
  /** speakers: the participants speaking now, loudest first. */
  speakers: string[] = [];
  /** closed is set once the room is over for this client. */
  closed = false;

  private readonly emitter = new Emitter<RoomEvents>();
  private readonly opts: RoomOptions;
  private readonly link: RoomLink;
  private readonly PC: typeof RTCPeerConnection | undefined;
  private joined = false;
  private early: Array<{ event: string; data: any }> = [];
  private pub: Signal | null = null;
  private sub: Signal | null = null;
  private peer: Signal | null = null; // P2P
  private peerId = ""; // P2P: the other participant
  private local: MediaStreamTrack[] = [];
  private localStream: MediaStream | null = null;
  private observers = new Map<string, { disconnect(): void }>();
  private renewTimer: any = 0;

  constructor(name: string, opts: RoomOptions, link: RoomLink) {
    this.name = name;
    this.opts = opts;
    this.link = link;
    this.PC = opts.env?.RTCPeerConnection ?? (globalThis as any).RTCPeerConnection;
    if (opts.stream) {
      this.localStream = opts.stream;
      this.local = opts.stream.getTracks();
    }
  }

  on<K extends keyof RoomEvents>(name: K, fn: (e: RoomEvents[K]) => void): () => void {
    return this.emitter.on(name, fn);
  }

  off<K extends keyof RoomEvents>(name: K, fn: (e: RoomEvents[K]) => void): void {
    this.emitter.off(name, fn);
  }

  private cmd(command: string, data: Record<string, unknown> = {}): Promise<any> {
    return this.link.command({ command, data: { room: this.name, ...data } });
  }

  private config(): RTCConfiguration {
    const c: RTCConfiguration = { iceServers: this.iceServers };
    if (this.opts.relay) c.iceTransportPolicy = "relay";
    return c;
  }

  private fail(err: unknown): void {
    if (this.closed) return;
    this.emitter.emit("error", err instanceof Error ? err : new Error(String(err)));
  }

  /** join sends room_join and sets the room up; client.joinRoom calls it. */
  async join(): Promise<this> {
    if (!this.PC) throw new Error("switchboard: calls need RTCPeerConnection");
    const data: Record<string, unknown> = {};
    if (this.opts.mode) data.mode = this.opts.mode;
    if (this.opts.codec) data.codec = this.opts.codec;
    const r = await this.cmd("room_join", data);
    this.participantId = r.participant;
    this.mode = r.mode === "p2p" ? "p2p" : "sfu";
    this.canPublish = !!r.can_publish;
    this.iceServers = this.opts.iceServers ?? r.ice_servers ?? [];
    this.scheduleRenewal(r.ice_servers_expire);
    for (const p of r.participants ?? []) {
      const rp = this.addParticipant(p.participant, p.user ?? "");
      for (const t of p.tracks ?? []) this.trackInfo(rp, t);
    }
    if (this.mode === "sfu") {
      this.sub = this.signal("subscriber");
      this.sub.pc.ontrack = (e) => this.onTrack(e);
    }
    this.joined = true;
    for (const m of this.early.splice(0)) this.push(m.event, m.data);
    if (this.mode === "sfu") {
      // A failed publish leaves the client in the room, receiving; the
      // error event comes once the caller of join could listen.
      if (this.local.length) await this.publishSFU(this.local).catch((err) => setTimeout(() => this.fail(err)));
    } else if (this.participants.size > 0) {
      // The newcomer of a P2P room offers; the one already there answers.
      this.peerId = [...this.participants.keys()][0];
      await this.offerP2P();
    }
    return this;
  }

  private signal(name: PCName): Signal {
    const target = name === "peer" ? undefined : name;
    const s = new Signal(this.PC!, this.config(), (c) => {
      const data: Record<string, unknown> = { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
      if (target) data.target = target;
      this.cmd("room_candidate", data).catch((err) => this.fail(err));
    });
    s.pc.onconnectionstatechange = () => this.emitter.emit("connection", { pc: name, state: s.pc.connectionState });
    s.pc.oniceconnectionstatechange = () => this.iceState(name, s);
    return s;
  }

  // ---- ICE restarts and TURN credential renewal ----

  /** current returns the room's connection of that name now. */
  private current(name: PCName): Signal | null {
    return name === "publisher" ? this.pub : name === "subscriber" ? this.sub : this.peer;
  }

  /**
   * iceState restarts ICE on a connection whose path broke: "failed" at
   * once, "disconnected" once it lasted iceRestartDelay. At most
   * MAX_RESTARTS in a row without getting connected in between: past
   * that, the server's own timeouts decide (it removes a participant
   * whose connection failed for good, with a "kicked" push).
   */
  private iceState(name: PCName, s: Signal): void {
    if (this.closed || this.current(name) !== s) return;
    const st = s.pc.iceConnectionState;
    clearTimeout(s.restartTimer);
    if (st === "connected" || st === "completed") {
      s.restarts = 0;
    } else if (st === "failed") {
      this.restartIce(name, s, "failed");
    } else if (st === "disconnected") {
      s.restartTimer = setTimeout(() => {
        const now = s.pc.iceConnectionState;
        if (now === "disconnected" || now === "failed") this.restartIce(name, s, "disconnected");
      }, this.opts.iceRestartDelay ?? 2000);
    }
  }

  /**
   * restartIce restarts ICE through the signaling: the publishing and P2P
   * connections offer with iceRestart; the subscribing connection, which
   * the server offers, asks the server for a restarting offer (room_ice).
   */
  private restartIce(name: PCName, s: Signal, reason: "disconnected" | "failed" | "renewal"): Promise<void> {
    if (this.closed || this.current(name) !== s) return Promise.resolve();
    if (reason !== "renewal") {
      if (s.restarts >= MAX_RESTARTS) return Promise.resolve();
      s.restarts++;
    }
    this.emitter.emit("iceRestart", { pc: name, reason });
    let p: Promise<void>;
    if (name === "publisher") p = this.offerSFU(true);
    else if (name === "subscriber") p = this.renewIce(true);
    else p = this.peerId ? this.offerP2P(true) : Promise.resolve();
    return p.catch((err) => this.fail(err));
  }

  /**
   * scheduleRenewal asks for fresh ICE servers before the TURN
   * credentials expire (at expire, Unix seconds): a quarter of their
   * remaining life before, at most 5 minutes before.
   */
  private scheduleRenewal(expire: unknown): void {
    clearTimeout(this.renewTimer);
    if (this.closed || this.opts.iceServers || typeof expire !== "number" || !(expire > 0)) return;
    const remaining = expire * 1000 - Date.now();
    const lead = Math.min(300_000, Math.max(remaining / 4, 0));
    this.renewTimer = setTimeout(() => void this.renew(), Math.max(0, remaining - lead));
  }

  /**
   * renew fetches fresh ICE servers (room_ice), applies them to every
   * connection (setConfiguration), and restarts ICE on the connections
   * that go through a TURN relay, so that they allocate again with the
   * new credentials before the old ones stop being accepted. A failure is
   * retried after 10 s.
   */
  private async renew(): Promise<void> {
    if (this.closed) return;
    try {
      const sub = this.sub;
      const restartSub = !!sub && (await usesRelay(sub.pc, this.opts.relay));
      const answered = sub?.answers ?? 0;
      await this.renewIce(restartSub);
      if (restartSub && sub) {
        this.emitter.emit("iceRestart", { pc: "subscriber", reason: "renewal" });
        // One connection at a time: during a restart the browser holds
        // the old relay allocations and the new ones, and the TURN server
        // counts them against the user's quota (turn_user_quota).
        await this.reconnected(sub, answered);
      }
      for (const name of ["publisher", "peer"] as const) {
        const s = this.current(name);
        if (s && (await usesRelay(s.pc, this.opts.relay))) await this.restartIce(name, s, "renewal");
      }
    } catch (err) {
      if (this.closed) return;
      this.fail(err);
      this.renewTimer = setTimeout(() => void this.renew(), 10_000);
    }
  }

  /**
   * reconnected waits until the subscribing connection answered the
   * server's restarting offer and is connected again, for at most five
   * times iceRestartDelay (10 s by default).
   */
  private async reconnected(s: Signal, answered: number): Promise<void> {
    const end = Date.now() + 5 * (this.opts.iceRestartDelay ?? 2000);
    while (!this.closed && Date.now() < end) {
      const st = s.pc.iceConnectionState;
      if (s.answers > answered && (st === "connected" || st === "completed")) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** renewIce asks for fresh ICE servers, and with restartSubscriber for the server's restarting offer, and applies them. */
  private async renewIce(restartSubscriber: boolean): Promise<void> {
    const data: Record<string, unknown> = {};
    if (restartSubscriber) data.restart = "subscriber";
    const r = await this.cmd("room_ice", data);
    if (this.closed || this.opts.iceServers) return;
    if (Array.isArray(r?.ice_servers)) {
      this.iceServers = r.ice_servers;
      for (const s of [this.pub, this.sub, this.peer]) {
        try {
          s?.pc.setConfiguration?.(this.config());
        } catch (err) {
          this.fail(err);
        }
      }
      this.emitter.emit("iceServers", { iceServers: this.iceServers, expires: r.ice_servers_expire ?? 0 });
    }
    this.scheduleRenewal(r?.ice_servers_expire);
  }

  /** pc returns a PeerConnection of the room, for getStats: "publisher", "subscriber" (SFU) or "peer" (P2P). */
  pc(name: PCName): RTCPeerConnection | null {
    return (name === "publisher" ? this.pub : name === "subscriber" ? this.sub : this.peer)?.pc ?? null;
  }

  // ---- publishing ----

  /** publish sends local tracks (audio and video of a getUserMedia stream). */
  async publish(stream: MediaStream): Promise<void> {
    this.localStream = stream;
    const tracks = stream.getTracks().filter((t) => !this.local.includes(t));
    this.local.push(...tracks);
    if (!this.joined || this.closed) return;
    if (this.mode === "sfu") await this.publishSFU(tracks);
    else if (this.peer) {
      for (const t of tracks) this.peer.pc.addTrack(t, stream);
      await this.offerP2P();
    }
  }

  private async publishSFU(tracks: MediaStreamTrack[]): Promise<void> {
    if (!this.canPublish) throw new Error(`switchboard: no permission to publish in room ${this.name}`);
    if (!this.pub) this.pub = this.signal("publisher");
    const pub = this.pub;
    const stream = this.localStream ?? undefined;
    for (const t of tracks) {
      // Describe the track first, so that the others know what it is.
      await this.cmd("room_publish", { track: t.id, source: t.kind === "video" ? "camera" : "microphone" }).catch(() => {});
      const init: RTCRtpTransceiverInit = { direction: "sendonly", streams: stream ? [stream] : [] };
      if (t.kind === "video" && this.opts.simulcast !== false) init.sendEncodings = LAYERS.map((l) => ({ ...l }));
      pub.pc.addTransceiver(t, init);
    }
    await this.offerSFU();
  }

  /** offerSFU sends the publishing connection's offer and applies the answer. */
  private offerSFU(iceRestart = false): Promise<void> {
    const pub = this.pub!;
    return pub.run(async () => {
      const offer = await pub.pc.createOffer(iceRestart ? { iceRestart: true } : undefined);
      await pub.pc.setLocalDescription(offer);
      const r = await this.cmd("room_offer", { sdp: pub.pc.localDescription!.sdp });
      await pub.remote({ type: "answer", sdp: r.sdp });
      pub.delivered();
    });
  }

  /** unpublish stops sending a local track (the others see track_unpublished). */
  async unpublish(track: MediaStreamTrack): Promise<void> {
    this.local = this.local.filter((t) => t !== track);
    const s = this.pub ?? this.peer;
    if (!s) return;
    const sender = s.pc.getSenders().find((x) => x.track === track);
    if (!sender) return;
    if (this.mode === "sfu") await this.cmd("room_unpublish", { track: `${this.participantId}:${track.id}` }).catch(() => {});
    s.pc.removeTrack(sender);
    if (this.mode === "sfu") await this.offerSFU();
    else await this.offerP2P();
  }

  /**
   * mute stops (or resumes) sending "audio", "video", or every local track
   * (kind omitted): the track is disabled here and the server stops
   * forwarding it and tells the others.
   */
  async mute(kind: "audio" | "video" | undefined, muted: boolean): Promise<void> {
    for (const t of this.local) if (!kind || t.kind === kind) t.enabled = !muted;
    if (this.mode === "sfu" && this.pub) await this.cmd("room_mute", { track: kind ?? "", muted });
  }

  /** isMuted reports whether every local track of kind is disabled. */
  isMuted(kind: "audio" | "video"): boolean {
    const ts = this.local.filter((t) => t.kind === kind);
    return ts.length > 0 && ts.every((t) => !t.enabled);
  }

  // ---- subscribing ----

  /**
   * setLayer caps the simulcast layer the server forwards of a remote
   * video: maxLayer 0 (low) to 2 (high), and/or width and height (the
   * server forwards the largest layer no bigger). SFU rooms only.
   */
  async setLayer(track: string, pref: { maxLayer?: number; width?: number; height?: number; paused?: boolean }): Promise<void> {
    if (this.mode !== "sfu") return;
    const data: Record<string, unknown> = { track };
    if (pref.maxLayer !== undefined) data.max_layer = pref.maxLayer;
    if (pref.width) data.max_width = Math.round(pref.width);
    if (pref.height) data.max_height = Math.round(pref.height);
    if (pref.paused) data.paused = true;
    await this.cmd("room_subscribe", data);
  }

  /**
   * attach shows a participant's media in a video (or audio) element and,
   * in an SFU room, keeps the layer of its video matched to the element's
   * displayed size: the smallest layer at least as large (a
   * ResizeObserver; devicePixelRatio counted). It
   * returns a function that stops the matching.
   */
  attach(participant: string, el: HTMLMediaElement): () => void {
    const p = this.participants.get(participant);
    if (p?.stream && el.srcObject !== p.stream) el.srcObject = p.stream;
    const RO = this.opts.env?.ResizeObserver ?? (globalThis as any).ResizeObserver;
    if (this.mode !== "sfu" || !RO) return () => {};
    let timer: any = 0;
    let last = "";
    const update = () => {
      const q = this.participants.get(participant);
      const v = q && [...q.tracks.values()].find((t) => t.kind === "video");
      if (!v) return;
      const ratio = (globalThis as any).devicePixelRatio || 1;
      const w = Math.round((el.clientWidth || 0) * ratio);
      const h = Math.round((el.clientHeight || 0) * ratio);
      const key = `${v.id} ${w} ${h}`;
      if (!w || !h || key === last) return;
      last = key;
      // The server forwards the largest layer within the cap; the layers
      // are a factor 2 apart, so twice the size less a pixel picks the
      // smallest layer at least as large as the element.
      this.setLayer(v.id, { width: 2 * w - 1, height: 2 * h - 1 }).catch(() => {});
    };
    const obs = new RO(() => {
      clearTimeout(timer);
      timer = setTimeout(update, 200);
    });
    obs.observe(el);
    const off = this.on("track", (t) => {
      if (t.participant === participant && t.kind === "video") {
        last = "";
        update();
      }
    });
    const stop = { disconnect: () => { obs.disconnect(); off(); clearTimeout(timer); } };
    this.observers.get(participant)?.disconnect();
    this.observers.set(participant, stop);
    return () => {
      stop.disconnect();
      if (this.observers.get(participant) === stop) this.observers.delete(participant);
    };
  }

  private addParticipant(id: string, user: string): RemoteParticipant {
    let p = this.participants.get(id);
    if (!p) {
      p = { id, user, tracks: new Map(), stream: null };
      this.participants.set(id, p);
    }
    return p;
  }

  /** trackInfo records a track the server announced. */
  private trackInfo(p: RemoteParticipant, t: any): RemoteTrack {
    let rt = p.tracks.get(t.track);
    if (!rt) {
      rt = { id: t.track, participant: p.id, kind: t.kind === "audio" ? "audio" : "video", track: null, muted: !!t.muted, layer: -1 };
      p.tracks.set(rt.id, rt);
    }
    rt.muted = !!t.muted;
    if (t.source) rt.source = t.source;
    if (t.name) rt.name = t.name;
    return rt;
  }

  private onTrack(e: RTCTrackEvent): void {
    const track = e.track;
    let pid = this.mode === "p2p" ? this.peerId : e.streams[0]?.id ?? "";
    // The SFU names each forwarded track "participant:track" and streams
    // it in the publisher's stream; Chromium takes both from a=msid.
    let id = track.id;
    if (this.mode === "sfu") {
      const owner = [...this.participants.values()].find((p) => p.tracks.has(id));
      if (owner) pid = owner.id;
      else if (!pid && id.includes(":")) pid = id.slice(0, id.lastIndexOf(":"));
    } else if (!pid) return;
    const p = this.addParticipant(pid, this.participants.get(pid)?.user ?? "");
    if (!p.stream) p.stream = e.streams[0] ?? newStream([]);
    else if (!p.stream.getTracks().includes(track)) p.stream.addTrack(track);
    let rt = p.tracks.get(id);
    if (!rt) {
      rt = { id, participant: pid, kind: track.kind === "audio" ? "audio" : "video", track: null, muted: false, layer: -1 };
      p.tracks.set(id, rt);
    }
    rt.track = track;
    const done = rt;
    track.addEventListener?.("ended", () => this.endTrack(p, done));
    this.emitter.emit("track", rt);
  }

  private endTrack(p: RemoteParticipant, t: RemoteTrack): void {
    if (p.tracks.get(t.id) !== t) return;
    p.tracks.delete(t.id);
    if (t.track && p.stream) p.stream.removeTrack(t.track);
    this.emitter.emit("trackEnded", t);
  }

  // ---- P2P ----

  private ensurePeer(): Signal {
    if (this.peer) return this.peer;
    const s = this.signal("peer");
    s.pc.ontrack = (e) => this.onTrack(e);
    this.peer = s;
    return s;
  }

  /** addLocal adds the local tracks the peer connection does not send yet. */
  private addLocal(s: Signal): void {
    const senders = s.pc.getSenders().map((x) => x.track);
    const stream = this.localStream ?? newStream(this.local);
    for (const t of this.local) if (!senders.includes(t)) s.pc.addTrack(t, ...(stream ? [stream] : []));
  }

  private offerP2P(iceRestart = false): Promise<void> {
    const s = this.ensurePeer();
    return s.run(async () => {
      this.addLocal(s);
      if (!this.local.some((t) => t.kind === "audio") && !s.pc.getTransceivers().some((x) => x.receiver.track?.kind === "audio")) {
        s.pc.addTransceiver("audio", { direction: "recvonly" });
      }
      if (!this.local.some((t) => t.kind === "video") && !s.pc.getTransceivers().some((x) => x.receiver.track?.kind === "video")) {
        s.pc.addTransceiver("video", { direction: "recvonly" });
      }
      const offer = await s.pc.createOffer(iceRestart ? { iceRestart: true } : undefined);
      await s.pc.setLocalDescription(offer);
      await this.cmd("room_offer", { sdp: s.pc.localDescription!.sdp });
      s.delivered();
    });
  }

  private answerP2P(from: string, sdp: string): Promise<void> {
    this.peerId = from;
    this.addParticipant(from, this.participants.get(from)?.user ?? "");
    const s = this.ensurePeer();
    return s.run(async () => {
      if (s.pc.signalingState === "have-local-offer") {
        // Both offered at once (new tracks, ICE restarts). The participant
        // with the smaller id keeps its offer, and the peer answers it;
        // the other rolls its own back, answers, and offers again after.
        if (this.participantId < from) return;
        await s.pc.setLocalDescription({ type: "rollback" });
        s.reoffer = true;
      }
      await s.remote({ type: "offer", sdp });
      this.addLocal(s);
      const answer = await s.pc.createAnswer();
      await s.pc.setLocalDescription(answer);
      await this.cmd("room_answer", { sdp: s.pc.localDescription!.sdp });
      s.delivered();
      if (s.reoffer) {
        s.reoffer = false;
        void this.offerP2P().catch((err) => this.fail(err));
      }
    });
  }

  private closePeer(): void {
    this.peer?.pc.close();
    this.peer = null;
    this.peerId = "";
  }

  // ---- pushes ----

  /** push handles one room push of the server; the client routes them here. */
  push(event: string, data: any): void {
    if (this.closed) return;
    if (!this.joined) {
      this.early.push({ event, data });
      return;
    }
    data = data ?? {};
    // The server tells every participant of each track, its publisher
    // included: this client's own tracks are not a remote participant's.
    if (event.startsWith("track_") && data.participant === this.participantId) return;
    switch (event) {
      case "offer":
        if (this.mode === "p2p") {
          this.answerP2P(data.from, data.sdp).catch((err) => this.fail(err));
          return;
        }
        this.answerSFU(data.sdp).catch((err) => this.fail(err));
        return;
      case "answer":
        if (this.peer) {
          const s = this.peer;
          s.run(() => s.remote({ type: "answer", sdp: data.sdp })).catch((err) => this.fail(err));
        }
        return;
      case "candidate":
        if (this.mode === "p2p") {
          const init: RTCIceCandidateInit = { candidate: data.candidate, sdpMid: data.sdpMid ?? null, sdpMLineIndex: data.sdpMLineIndex ?? null };
          this.ensurePeer().candidate(init);
        }
        return;
      case "participant_joined": {
        const p = this.addParticipant(data.participant, data.user ?? "");
        this.emitter.emit("participantJoined", p);
        return;
      }
      case "participant_left": {
        const p = this.participants.get(data.participant);
        if (!p) return;
        this.participants.delete(p.id);
        for (const t of [...p.tracks.values()]) this.endTrack(p, t);
        this.observers.get(p.id)?.disconnect();
        this.observers.delete(p.id);
        if (this.mode === "p2p" && this.peerId === p.id) this.closePeer();
        this.emitter.emit("participantLeft", { participant: p, reason: data.reason ?? "" });
        return;
      }
      case "track_published": {
        const p = this.addParticipant(data.participant, this.participants.get(data.participant)?.user ?? "");
        this.trackInfo(p, data);
        return;
      }
      case "track_unpublished": {
        const p = this.participants.get(data.participant);
        const t = p?.tracks.get(data.track);
        if (p && t) this.endTrack(p, t);
        return;
      }
      case "track_muted": {
        const t = this.participants.get(data.participant)?.tracks.get(data.track);
        if (t) t.muted = !!data.muted;
        this.emitter.emit("muted", { participant: data.participant, track: data.track, muted: !!data.muted });
        return;
      }
      case "speakers":
        this.speakers = Array.isArray(data.speakers) ? data.speakers : [];
        this.emitter.emit("speakers", this.speakers);
        return;
      case "layer": {
        for (const p of this.participants.values()) {
          const t = p.tracks.get(data.track);
          if (t) t.layer = data.layer;
        }
        this.emitter.emit("layer", { track: data.track, layer: data.layer });
        return;
      }
      case "kicked":
        // "kicked" (the server API), or "publisher connection failed" /
        // "subscriber connection failed" (ICE lost the path for good).
        this.end(typeof data.reason === "string" && data.reason ? data.reason : "kicked");
        return;
    }
  }

  private answerSFU(sdp: string): Promise<void> {
    const s = this.sub!;
    return s.run(async () => {
      await s.remote({ type: "offer", sdp });
      const answer = await s.pc.createAnswer();
      await s.pc.setLocalDescription(answer);
      await this.cmd("room_answer", { sdp: s.pc.localDescription!.sdp });
      s.delivered();
      s.answers++;
    });
  }

  /** disconnected: the client's connection ended, and with it the room on the server. */
  disconnected(): void {
    this.end("disconnected");
  }

  /** leave hangs up: the server removes this participant, the connections close. Local tracks are not stopped. */
  async leave(): Promise<void> {
    if (this.closed) return;
    const r = this.cmd("room_leave").catch(() => {});
    this.end("left");
    await r;
  }

  private end(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.renewTimer);
    for (const s of [this.pub, this.sub, this.peer]) clearTimeout(s?.restartTimer);
    for (const o of this.observers.values()) o.disconnect();
    this.observers.clear();
    this.pub?.pc.close();
    this.sub?.pc.close();
    this.peer?.pc.close();
    this.link.forget();
    this.emitter.emit("closed", { reason });
  }
}

/** MAX_RESTARTS bounds the ICE restarts of a connection in a row without it getting connected. */
const MAX_RESTARTS = 3;

/**
 * usesRelay says whether a connection's selected candidate pair goes
 * through a TURN relay of ours (always, with relay: true).
 */
async function usesRelay(pc: RTCPeerConnection, relay?: boolean): Promise<boolean> {
  if (relay) return true;
  try {
    const stats = await pc.getStats();
    const byId = new Map<string, any>();
    let pair: string | undefined;
    stats.forEach((r: any) => {
      byId.set(r.id, r);
      if (r.type === "transport" && r.selectedCandidatePairId) pair = r.selectedCandidatePairId;
    });
    if (!pair) {
      stats.forEach((r: any) => {
        if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") pair = r.id;
      });
    }
    const local = pair ? byId.get(byId.get(pair)?.localCandidateId) : undefined;
    return local?.candidateType === "relay";
  } catch {
    return false;
  }
}

function newStream(tracks: MediaStreamTrack[]): MediaStream | null {
  const MS = (globalThis as any).MediaStream;
  return MS ? new MS(tracks) : null;
}
