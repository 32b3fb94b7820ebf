'use strict';
// The textbook pub/sub server that switchboard-bench compares Switchboard
// against: one process, npm "ws", a Map from channel name to the Set of
// sockets subscribed to it, JSON messages {command, channel, data}, and a
// tiny HTTP endpoint for the backend: POST /publish {"channel","data"}.
// It has no acknowledgements, offsets, history, authentication, pings or
// backpressure: that is what "textbook" means here.
//
// Usage: node server.js [host] [port]   (defaults 127.0.0.1 and 8100; port 0
// picks a free one). It prints "baseline listening on http://HOST:PORT".

const http = require('http');
const { WebSocketServer } = require('ws');

const host = process.argv[2] || '127.0.0.1';
const port = Number(process.argv[3] || 8100);

const channels = new Map(); // channel name -> Set of sockets

function publish(channel, data) {
  const subscribers = channels.get(channel);
  if (!subscribers) return 0;
  const message = JSON.stringify({ channel, data });
  for (const socket of subscribers) socket.send(message);
  return subscribers.size;
}

function unsubscribe(socket, channel) {
  const subscribers = channels.get(channel);
  if (!subscribers) return;
  subscribers.delete(socket);
  if (subscribers.size === 0) channels.delete(channel);
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/publish') {
    res.writeHead(404).end();
    return;
  }
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    let msg;
    try { msg = JSON.parse(body); } catch { res.writeHead(400).end(); return; }
    const delivered = publish(msg.channel, msg.data);
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ delivered }));
  });
});

const wss = new WebSocketServer({ server, path: '/ws' });

wss.on('connection', (socket) => {
  const mine = new Set();
  socket.on('message', (raw) => {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    if (typeof msg.channel !== 'string') return;
    if (msg.command === 'subscribe') {
      if (!channels.has(msg.channel)) channels.set(msg.channel, new Set());
      channels.get(msg.channel).add(socket);
      mine.add(msg.channel);
    } else if (msg.command === 'unsubscribe') {
      unsubscribe(socket, msg.channel);
      mine.delete(msg.channel);
    } else if (msg.command === 'publish') {
      publish(msg.channel, msg.data);
    }
  });
  socket.on('close', () => {
    for (const channel of mine) unsubscribe(socket, channel);
  });
});

server.listen(port, host, () => {
  const addr = server.address();
  console.log(`baseline listening on http://${addr.address}:${addr.port}`);
});
