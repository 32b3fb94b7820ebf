// What the WHIP and WHEP demo pages share: status and notice lines, the
// wait for ICE gathering (no trickle ICE), and the server's ICE servers
// from its Link headers.

// statusLine returns the setStatus and notice functions of a page whose
// ui has a status element and a notice element.
export function statusLine(ui) {
  return {
    setStatus(state, text = state) {
      ui.status.dataset.state = state;
      ui.status.textContent = text;
    },
    notice(text) {
      ui.notice.textContent = text;
      ui.notice.hidden = !text;
    },
  };
}

// gathered resolves when ICE gathering completes, or after ms: the offer
// carries the candidates found by then (no trickle).
export function gathered(conn, ms) {
  return new Promise((resolve) => {
    if (conn.iceGatheringState === 'complete') return resolve();
    const t = setTimeout(resolve, ms);
    conn.addEventListener('icegatheringstatechange', () => {
      if (conn.iceGatheringState === 'complete') { clearTimeout(t); resolve(); }
    });
  });
}

// iceServers asks the offer URL (OPTIONS) for the server's STUN and TURN
// servers, announced in Link rel="ice-server" headers (none without TURN).
export async function iceServers(url) {
  const res = await fetch(url, { method: 'OPTIONS' }).catch(() => null);
  const out = [];
  for (const link of (res?.headers.get('Link') || '').split(/,(?=\s*<)/)) {
    const m = link.match(/<([^>]+)>(.*)/);
    if (!m || !/rel="ice-server"/.test(m[2])) continue;
    const param = (k) => (m[2].match(new RegExp(`${k}="((?:[^"\\\\]|\\\\.)*)"`)) || [])[1]?.replace(/\\(.)/g, '$1');
    const s = { urls: m[1] };
    if (param('username')) Object.assign(s, { username: param('username'), credential: param('credential') });
    out.push(s);
  }
  return out;
}
