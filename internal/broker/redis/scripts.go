package redis

import (
	"strings"

	"github.com/redis/rueidis"
)

// The Lua scripts. Each works on the keys of one channel only, all named in
// KEYS and sharing the channel's hash tag, so that in a Redis Cluster every
// script runs on one slot (no CROSSSLOT). Each reads the clock with TIME so
// that every node agrees on it.
// Offsets and times stay far below 2^53, where Lua numbers are exact.
//
// All but publishScript may run twice without harm, so the client retries
// them on a broken connection; a publication is never sent twice.

// luaNow and luaTrim are shared by the scripts.
const (
	luaNow = `
local function now_ms()
	local t = redis.call('TIME')
	return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`
	// trim drops the stream entries older than cutoff (ms), oldest first,
	// reading at most 1024 of them per call; History skips any left over.
	// The common case, nothing expired, costs one single-entry read.
	luaTrim = `
local function trim(key, cutoff)
	local oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
	if #oldest == 0 or tonumber(oldest[1][2][4]) >= cutoff then return end
	for _ = 1, 16 do
		local old = redis.call('XRANGE', key, '-', '+', 'COUNT', 64)
		if #old == 0 then return end
		for i = 1, #old do
			if tonumber(old[i][2][4]) >= cutoff then
				if i > 1 then redis.call('XTRIM', key, 'MINID', old[i][1]) end
				return
			end
		end
		local last = tonumber(string.match(old[#old][1], '^(%d+)'))
		redis.call('XTRIM', key, 'MINID', string.format('%d-0', last + 1))
	end
end
`
)

// publishScript stores and PUBLISHes one publication; spublishScript is
// the same with SPUBLISH, for a Redis Cluster: the shard channel hashes to
// the slot of the keys, so the script may publish to it.
//
//	KEYS: meta, history[, idempotency key]
//	ARGV: pubsub channel, data, history size, history ttl (ms),
//	      meta ttl (ms), epoch to start when the channel has none,
//	      idempotency window (ms, with the third key)
//	returns: {offset, epoch, duplicate (1 or 0)}
//
// With an idempotency key the script first reads it: a key set by an
// earlier publication holds that publication's "offset:epoch", which is
// returned with duplicate 1 and nothing is stored or sent. Otherwise the
// key is set to the new publication's position, expiring after the window.
// Check and set happen inside the script, so two nodes publishing with the
// same key at once store one publication.
var (
	publishScript  = newPublishScript("PUBLISH")
	spublishScript = newPublishScript("SPUBLISH")
)

// newPublishScript returns the publish script that sends with cmd.
func newPublishScript(cmd string) *rueidis.Lua {
	return rueidis.NewLuaScript(luaNow + strings.ReplaceAll(luaPublish, "PUBLISH_COMMAND", cmd))
}

// luaPublish is the body of the publish scripts; PUBLISH_COMMAND stands for
// the Pub/Sub command.
const luaPublish = `
local meta, hist, idem = KEYS[1], KEYS[2], KEYS[3]
local size, ttl, metattl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if idem then
	local used = redis.call('GET', idem)
	if used then
		local o, e = string.match(used, '^(%d+):(.*)$')
		return {tonumber(o), e, 1}
	end
end
local now = now_ms()
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
	-- A new channel, or one whose state expired or was lost: a new epoch,
	-- and no history from an old one.
	epoch = ARGV[6]
	redis.call('DEL', hist)
	redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', meta, 'offset', 1)
redis.call('HSET', meta, 'ttl', ttl)
if size > 0 then
	redis.call('XADD', hist, 'MAXLEN', size, string.format('%d-0', offset), 'd', ARGV[2], 't', now)
	-- Size bounds the stream; expired entries are trimmed by History, and
	-- the whole stream expires when the channel has been idle for its TTL.
	if ttl > 0 then
		redis.call('PEXPIRE', hist, ttl)
	else
		redis.call('PEXPIRE', hist, metattl)
	end
else
	redis.call('DEL', hist)
end
redis.call('PEXPIRE', meta, metattl)
redis.call('PUBLISH_COMMAND', ARGV[1], string.format('p%d:%s:%d:', offset, epoch, now) .. ARGV[2])
if idem then
	redis.call('SET', idem, string.format('%d:', offset) .. epoch, 'PX', ARGV[7])
end
return {offset, epoch, 0}
`

// historyScript reads a channel's position and history together.
//
//	KEYS: meta, history
//	ARGV: epoch to start when the channel has none, meta ttl (ms) then,
//	      since given ("1" or "0"), since epoch, first entry id or "-",
//	      limit (<0 all), reverse ("1" or "0")
//	returns: {offset, epoch, epoch mismatch (1 or 0), now (ms),
//	          history ttl (ms), id1, time1, data1, id2, ...}
var historyScript = rueidis.NewLuaScriptRetryable(luaNow + luaTrim + `
local meta, hist = KEYS[1], KEYS[2]
local now = now_ms()
local m = redis.call('HMGET', meta, 'offset', 'epoch', 'ttl')
local offset, epoch, ttl = tonumber(m[1]) or 0, m[2], tonumber(m[3]) or 0
if not epoch then
	epoch, offset, ttl = ARGV[1], 0, 0
	redis.call('DEL', hist)
	redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
	redis.call('PEXPIRE', meta, ARGV[2])
end
local out = {offset, epoch, 0, now, ttl}
if ARGV[3] == '1' and ARGV[4] ~= epoch then
	out[3] = 1
	return out
end
local limit = tonumber(ARGV[6])
if limit == 0 then return out end
if ttl > 0 then trim(hist, now - ttl) end
local entries
if ARGV[7] == '1' then
	if limit > 0 then
		entries = redis.call('XREVRANGE', hist, '+', ARGV[5], 'COUNT', limit)
	else
		entries = redis.call('XREVRANGE', hist, '+', ARGV[5])
	end
else
	if limit > 0 then
		entries = redis.call('XRANGE', hist, ARGV[5], '+', 'COUNT', limit)
	else
		entries = redis.call('XRANGE', hist, ARGV[5], '+')
	end
end
for _, e in ipairs(entries) do
	out[#out + 1] = e[1]
	out[#out + 1] = e[2][4]
	out[#out + 1] = e[2][2]
end
return out
`)

// addPresenceScript adds or refreshes one client's presence.
//
//	KEYS: presence hash, presence-expiry sorted set
//	ARGV: client id, JSON info, ttl (ms)
var addPresenceScript = rueidis.NewLuaScriptRetryable(luaNow + `
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now_ms() + ttl, ARGV[1])
for _, k in ipairs(KEYS) do
	-- The keys live as long as their longest-lived entry.
	if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
return 1
`)

// removePresenceScript removes one client's presence.
//
//	KEYS: presence hash, presence-expiry sorted set
//	ARGV: client id
var removePresenceScript = rueidis.NewLuaScriptRetryable(`
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`)

// presenceScript drops expired entries and returns the JSON infos left.
//
//	KEYS: presence hash, presence-expiry sorted set
var presenceScript = rueidis.NewLuaScriptRetryable(luaNow + `
local now = now_ms()
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
if #gone > 0 then
	redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
	for i = 1, #gone, 1000 do
		redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
	end
end
return redis.call('HVALS', KEYS[1])
`)
