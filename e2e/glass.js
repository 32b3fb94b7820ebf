// Glass-to-glass latency of live streams: a barcode of the wall-clock time
// burned into every frame by the publisher, read back from each frame the
// viewer shows. Used by bench/stream-latency.js (the measurement) and by
// e2e/stream.test.js (a check that the barcode survives, so the tool does
// not rot).
//
// The barcode is a grid of BAR.cols x BAR.rows blocks, BAR.block pixels
// square in a FRAME.w x FRAME.h frame (positions scale with the frame, so a
// viewer that gets a smaller picture still reads it). Blocks in reading
// order (row by row, left to right):
//
//	0, 1     sync: white, black
//	2..33    the capture time, ms since the Unix epoch mod 2^32, Gray
//	         coded, most significant bit first
//	34..41   the frame counter mod 256, plain binary, MSB first
//	42, 43   sync: black, white
//
// Gray code because ffmpeg evaluates the clock once per block: a frame
// drawn across a millisecond boundary gets some bits of t and some of
// t+1, and in Gray code those differ in one bit only, so any mix reads as
// t or t+1. The reader resolves the 2^32 ms wrap (49 days) with its own
// clock, so publisher and reader must share a clock (one machine, or
// NTP-synchronised machines, whose offset then adds to the error).

// FRAME is the picture size the barcode is laid out in, and the frame
// rate. A publisher may send another 16:9 size: the barcode is drawn at
// FRAME size and the picture scaled (blocks of 24 pixels at 640x360).
export const FRAME = { w: 1280, h: 720, fps: 30 };

// BAR is the barcode's place and grid in a FRAME-sized picture.
export const BAR = { x: 112, y: 24, cols: 22, rows: 2, block: 48 };

const TIME_BITS = 32;
const FRAME_BITS = 8;
const FIRST_TIME = 2; // block index of the time's most significant bit
const FIRST_FRAME = FIRST_TIME + TIME_BITS;

// BLOCK_COUNT is the number of blocks (44), the bytes per frame of the
// ffmpeg reader.
export const BLOCK_COUNT = BAR.cols * BAR.rows;

// ffmpegFilter is the filter graph (for -filter_complex, input 0 the
// picture) that burns the barcode in: the picture is scaled to one pixel
// per block, geq paints each pixel from time(0) (the wall clock as the
// frame passes the filter, after -re has released it) and the frame
// number N, and the result is scaled back up and laid over the picture,
// then the picture is scaled to size (WxH) when it is not FRAME's.
export function ffmpegFilter(size = `${FRAME.w}x${FRAME.h}`) {
  const i = `(Y*${BAR.cols}+X)`;
  const now = `mod(floor(time(0)*1000),${2 ** TIME_BITS})`;
  // Gray bit b of v is floor((v + 2^b) / 2^(b+1)) mod 2; block i holds bit
  // (FIRST_FRAME-1-i).
  const timeBit = `mod(floor((${now}+pow(2,${FIRST_FRAME - 1}-${i}))/pow(2,${FIRST_FRAME}-${i})),2)`;
  const frameBit = `mod(floor(N/pow(2,${FIRST_FRAME + FRAME_BITS - 1}-${i})),2)`;
  const lum = `255*if(lt(${i},${FIRST_TIME}),eq(X,0),if(lt(${i},${FIRST_FRAME}),${timeBit},if(lt(${i},${FIRST_FRAME + FRAME_BITS}),${frameBit},eq(X,${BAR.cols - 1}))))`;
  return `[0:v]split[pic][b];[b]scale=${BAR.cols}:${BAR.rows},format=gray,geq=lum='${lum}',` +
    `scale=${BAR.cols * BAR.block}:${BAR.rows * BAR.block}:flags=neighbor,format=yuv420p[bar];` +
    `[pic][bar]overlay=${BAR.x}:${BAR.y}${size === `${FRAME.w}x${FRAME.h}` ? '' : `,scale=${size.replace('x', ':')}`},format=yuv420p[v]`;
}

// ffmpegPublishArgs are the arguments of an ffmpeg that publishes an
// H.264 test pattern of size (WxH, 16:9) with the barcode (and AAC audio)
// to url (RTMP), in real time (-re), one keyframe a second, no B-frames.
export function ffmpegPublishArgs(url, { bitrate = '2M', size = `${FRAME.w}x${FRAME.h}` } = {}) {
  return ['-hide_banner', '-loglevel', 'error', '-nostats',
    '-re', '-f', 'lavfi', '-i', `testsrc2=size=${FRAME.w}x${FRAME.h}:rate=${FRAME.fps}`,
    '-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-filter_complex', ffmpegFilter(size), '-map', '[v]', '-map', '1:a',
    '-c:v', 'libx264', '-profile:v', 'baseline', '-preset', 'ultrafast', '-tune', 'zerolatency', '-bf', '0',
    '-g', String(FRAME.fps), '-keyint_min', String(FRAME.fps), '-sc_threshold', '0',
    '-b:v', bitrate, '-maxrate', bitrate, '-bufsize', bitrate, '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-b:a', '64k', '-f', 'flv', url];
}

// ffmpegReaderArgs are the arguments of an ffmpeg that plays url (an HLS
// playlist) and writes, per decoded frame, the mean luma of each barcode
// block: BLOCK_COUNT bytes a frame on stdout, flushed at once.
export function ffmpegReaderArgs(url) {
  const f = (n, d) => `${n}/${d}`;
  const crop = `crop=iw*${f(BAR.cols * BAR.block, FRAME.w)}:ih*${f(BAR.rows * BAR.block, FRAME.h)}:iw*${f(BAR.x, FRAME.w)}:ih*${f(BAR.y, FRAME.h)}`;
  return ['-hide_banner', '-loglevel', 'error', '-nostats', '-flags', 'low_delay',
    '-live_start_index', '-1', '-i', url, '-an', '-fps_mode', 'passthrough', '-vf', `${crop},scale=${BAR.cols}:${BAR.rows}:flags=area,format=gray`,
    '-f', 'rawvideo', '-flush_packets', '1', 'pipe:1'];
}

// decodeLevels reads a barcode from the luma of its blocks (0..255, in
// block order). It returns {ms, frame}, ms the capture time mod 2^32, or
// null when the sync blocks are not there or the contrast is too low (a
// frame without the barcode, a smeared or half-decoded one). It is
// self-contained: pages get it by its source.
function decodeLevels(levels) {
  const n = levels.length;
  if (n !== 44) return null;
  const white = Math.min(levels[0], levels[n - 1]);
  const black = Math.max(levels[1], levels[n - 2]);
  if (white - black < 96) return null;
  const mid = (white + black) / 2;
  let bit = 0;
  let ms = 0;
  for (let i = 2; i < 34; i++) {
    bit ^= levels[i] > mid ? 1 : 0; // binary bit = the one before XOR the Gray bit
    ms = ms * 2 + bit;
  }
  let frame = 0;
  for (let i = 34; i < 42; i++) frame = frame * 2 + (levels[i] > mid ? 1 : 0);
  return { ms, frame };
}
export { decodeLevels };

// unwrapMs turns a capture time mod 2^32 into ms since the epoch: the
// latest such time not after now + 1 s (a capture cannot be in the reader's
// future, bar clock jitter).
export function unwrapMs(ms32, now) {
  const mod = 2 ** 32;
  const ahead = now + 1000;
  return ahead - ((((ahead % mod) - ms32) % mod) + mod) % mod;
}

// encodeLevels is the inverse of decodeLevels, for tests and for pages
// that draw the barcode: the 44 block levels (0 or 255) of a capture time
// (ms since the epoch) and a frame counter. Self-contained.
function encodeLevels(ms, frame) {
  const out = [255, 0];
  const v = ms % 4294967296;
  for (let b = 31; b >= 0; b--) out.push(Math.floor((v + 2 ** b) / 2 ** (b + 1)) % 2 ? 255 : 0);
  for (let b = 7; b >= 0; b--) out.push(Math.floor((frame % 256) / 2 ** b) % 2 ? 255 : 0);
  out.push(0, 255);
  return out;
}
export { encodeLevels };

// pageLib is installed in pages (addInitScript) as window.glass: watch
// and watchTrack read the barcode of every frame a video element presents
// or a track delivers, publish draws a barcode canvas and publishes it over
// WHIP, play plays a stream over WHEP and LL-HLS with readers on both.
// Self-contained but for the functions pageScript puts before it.
function pageLib(BAR, FRAME) {
  const { decodeLevels, encodeLevels } = window.glassCodec;
  const scale = 4; // canvas pixels per block when reading

  // sampler returns a function that reads the barcode of an image source
  // (a video element or a VideoFrame) of size vw x vh seen at time shown
  // (ms since the epoch) into out.
  function sampler(out) {
    const cv = document.createElement('canvas');
    cv.width = BAR.cols * scale;
    cv.height = BAR.rows * scale;
    const ctx = cv.getContext('2d', { willReadFrequently: true });
    return (src, vw, vh, shown) => {
      out.frames++;
      if (!vw || !vh) return;
      ctx.drawImage(src, (BAR.x * vw) / FRAME.w, (BAR.y * vh) / FRAME.h, (BAR.cols * BAR.block * vw) / FRAME.w,
        (BAR.rows * BAR.block * vh) / FRAME.h, 0, 0, cv.width, cv.height);
      const px = ctx.getImageData(0, 0, cv.width, cv.height).data;
      const levels = [];
      for (let r = 0; r < BAR.rows; r++) {
        for (let c = 0; c < BAR.cols; c++) {
          let sum = 0; // the block's central 2x2 pixels
          for (let dy = 1; dy <= 2; dy++) {
            for (let dx = 1; dx <= 2; dx++) {
              const o = ((r * scale + dy) * cv.width + c * scale + dx) * 4;
              sum += 0.299 * px[o] + 0.587 * px[o + 1] + 0.114 * px[o + 2];
            }
          }
          levels.push(sum / 4);
        }
      }
      const got = decodeLevels(levels);
      if (got) out.samples.push({ ms: got.ms, frame: got.frame, shown, w: vw, h: vh });
      else out.unread++;
    };
  }

  // watch samples every frame video presents (requestVideoFrameCallback),
  // at the time the compositor expects to show it.
  function watch(video) {
    const out = { samples: [], unread: 0, frames: 0 };
    const sample = sampler(out);
    const onFrame = (now, meta) => {
      sample(video, video.videoWidth, video.videoHeight, performance.timeOrigin + (meta.expectedDisplayTime ?? now));
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    return out;
  }

  // watchTrack samples every frame a video track delivers, decoded, as it
  // comes out of the decoder (MediaStreamTrackProcessor): the latency
  // before rendering, which does not depend on the page being painted.
  function watchTrack(track) {
    const out = { samples: [], unread: 0, frames: 0 };
    const sample = sampler(out);
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    (async () => {
      for (;;) {
        const { value: frame, done } = await reader.read();
        if (done) return;
        const t = performance.timeOrigin + performance.now();
        try {
          sample(frame, frame.displayWidth, frame.displayHeight, t);
        } finally {
          frame.close();
        }
      }
    })().catch(() => {});
    return out;
  }

  // publish draws a moving picture with the barcode of Date.now() on a
  // canvas of width x height (16:9; FRAME's by default), FRAME.fps times a
  // second, each frame captured as it is drawn (captureStream(0) and
  // requestFrame), and publishes it to path over WHIP as H.264. Resolves
  // when the connection is up.
  async function publish(path, key, width = FRAME.w, height = FRAME.h) {
    const cv = document.createElement('canvas');
    cv.width = width;
    cv.height = height;
    cv.style.width = '320px'; // in view beside the players
    document.body.append(cv);
    const ctx = cv.getContext('2d');
    ctx.scale(width / FRAME.w, height / FRAME.h); // draw in FRAME's coordinates
    const stream = cv.captureStream(0);
    const [track] = stream.getVideoTracks();
    track.contentHint = 'detail'; // keep the resolution under CPU load
    let n = 0;
    const draw = () => {
      ctx.fillStyle = '#3a5f8a';
      ctx.fillRect(0, 0, FRAME.w, FRAME.h);
      ctx.fillStyle = '#e0c040';
      ctx.fillRect((n * 8) % FRAME.w, FRAME.h / 2, 160, 160); // some motion
      const levels = encodeLevels(Date.now(), n);
      for (let i = 0; i < levels.length; i++) {
        ctx.fillStyle = levels[i] ? '#fff' : '#000';
        ctx.fillRect(BAR.x + (i % BAR.cols) * BAR.block, BAR.y + Math.floor(i / BAR.cols) * BAR.block, BAR.block, BAR.block);
      }
      track.requestFrame();
      n++;
    };
    window.glassTimer = setInterval(draw, 1000 / FRAME.fps);
    const pc = new RTCPeerConnection();
    window.glassPubPC = pc;
    const tr = pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    const caps = RTCRtpSender.getCapabilities('video').codecs;
    const h264 = caps.filter((c) => c.mimeType.toLowerCase() === 'video/h264');
    tr.setCodecPreferences([...h264, ...caps.filter((c) => !h264.includes(c))]);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const res = await fetch(`/whip/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${key}` }, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error(`WHIP ${res.status}: ${(await res.text()).trim()}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    const params = tr.sender.getParameters();
    params.degradationPreference = 'maintain-resolution';
    await tr.sender.setParameters(params).catch(() => {});
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the WHIP connection did not come up')), 15000);
      pc.addEventListener('connectionstatechange', () => {
        if (pc.connectionState === 'connected') { clearTimeout(t); resolve(); }
      });
    });
  }

  // play starts two players of path in this page, one over WHEP, one
  // over LL-HLS with hls.js (loaded by the caller, configured as
  // /watch.html does), both in view: Chromium paints the videos of a page in
  // the background about once a second. It resolves once the WHEP answer
  // is applied; the readers are window.glassRead: whep (presented frames),
  // whepDecoded (decoded frames, from the track, once it arrives), hls
  // (presented frames), and window.glassPC is the WHEP connection.
  // hlsConfig is added to hls.js's configuration.
  async function play(path, hlsConfig = {}) {
    const video = () => {
      const v = document.createElement('video');
      Object.assign(v, { muted: true, autoplay: true, playsInline: true });
      v.style.width = '320px';
      document.body.append(v);
      return v;
    };
    const hv = video();
    const h = new window.Hls({ lowLatencyMode: true, ...hlsConfig });
    h.loadSource(`/hls/${path}/index.m3u8`);
    h.attachMedia(hv);
    window.glassRead = { hls: watch(hv) };
    const wv = video();
    const pc = new RTCPeerConnection();
    window.glassPC = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addEventListener('track', (e) => {
      wv.srcObject = new MediaStream([e.track]);
      window.glassRead.whepDecoded = watchTrack(e.track);
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const res = await fetch(`/whep/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (res.status !== 201) throw new Error(`WHEP ${res.status}: ${(await res.text()).trim()}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    window.glassRead.whep = watch(wv);
  }

  // gathered resolves when ICE gathering of pc is complete, or after 2 s.
  function gathered(pc) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, 2000);
      pc.addEventListener('icegatheringstatechange', () => {
        if (pc.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
      });
    });
  }
  window.glass = { watch, watchTrack, publish, play };
}

// pageScript is the script to install in a page (context.addInitScript or
// page.addInitScript) for window.glass.
export function pageScript() {
  return `window.glassCodec = { decodeLevels: ${decodeLevels}, encodeLevels: ${encodeLevels} };\n` +
    `(${pageLib})(${JSON.stringify(BAR)}, ${JSON.stringify(FRAME)});`;
}

// latencies turns a reader's samples into latencies in ms (shown minus
// captured), dropping repeated frames (a frame shown twice counts once).
export function latencies(samples) {
  const out = [];
  let last = -1;
  for (const s of samples) {
    if (s.ms === last) continue;
    last = s.ms;
    out.push(s.shown - unwrapMs(s.ms, s.shown));
  }
  return out;
}

// scheduleLag measures how far the publisher's stamps fell behind a
// steady frame rate: for a reader that sees every frame (samples in
// order, the frame counter unwrapped past 255), each frame's capture time
// minus where fps frames a second from the earliest would put it, less
// the smallest such difference. With ffmpeg -re this is how late ffmpeg
// got to frames, by which the latency of those frames is underestimated.
export function scheduleLag(samples, fps = FRAME.fps) {
  const out = [];
  let idx = 0;
  let prev = null;
  for (const s of samples) {
    const ms = unwrapMs(s.ms, s.shown);
    if (prev) {
      if (ms === prev.ms) continue;
      idx += (((s.frame - prev.frame) % 256) + 256) % 256;
    }
    prev = { ms, frame: s.frame };
    out.push(ms - (idx * 1000) / fps);
  }
  const least = Math.min(...out);
  return out.map((x) => x - least);
}

// summary is the count, p50, p95, max and min of xs (ms, rounded).
export function summary(xs) {
  if (!xs.length) return { n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  const r = (x) => Math.round(x);
  return { n: s.length, p50: r(q(0.5)), p95: r(q(0.95)), max: r(s[s.length - 1]), min: r(s[0]) };
}

// monotonic reports whether decoded capture times only increase and the
// frame counter moves on with them (mod 256): the barcode round-trips.
export function monotonic(samples) {
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = unwrapMs(b.ms, b.shown) - unwrapMs(a.ms, a.shown);
    if (dt < 0) return false;
    if (dt === 0 && a.frame !== b.frame) return false;
    if (dt > 0 && a.frame === b.frame && dt < 5000) return false;
  }
  return true;
}
