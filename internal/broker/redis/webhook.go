package redis

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// The webhook queue (the webhook package's Queue). Partition p's keys
// share one hash tag, so that they sit in one slot of a cluster:
//
//	{prefix}:webhook:{p}:log    stream of facts, consumer group "webhook"
//	{prefix}:webhook:{p}:state  hash: channel -> membership state
//	{prefix}:webhook:{p}:lease  string: the sender's name, expiring
//	{prefix}:webhook:node:{id}  string: set while node id is alive, expiring
//
// A sender reads with XREADGROUP as its own consumer and, after the
// backend's 2xx, XACKs and XDELs the entries. A new sender first takes
// over, with XAUTOCLAIM, whatever the previous one read and did not
// acknowledge, oldest first, so that no fact is skipped and the order holds.

const webhookGroup = "webhook"

func (b *Broker) whKey(p int, what string) string {
	return b.opts.Prefix + ":webhook:{" + strconv.Itoa(p) + "}:" + what
}

// leaseScript takes or renews a lease. KEYS: lease. ARGV: owner, ttl (ms).
// Returns 1 when the owner holds it.
var leaseScript = rueidis.NewLuaScriptRetryable(`
local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
	return 1
end
return 0
`)

// Append implements webhook.Queue.
func (b *Broker) Append(ctx context.Context, p int, data []byte) error {
	cmd := b.client.B().Xadd().Key(b.whKey(p, "log")).Id("*").FieldValue().FieldValue("d", rueidis.BinaryString(data)).Build()
	if err := b.client.Do(ctx, cmd).Error(); err != nil {
		return b.wrap("webhook append", err)
	}
	return nil
}

// Lease implements webhook.Queue.
func (b *Broker) Lease(ctx context.Context, p int, owner string, ttl time.Duration) (bool, error) {
	n, err := leaseScript.Exec(ctx, b.client, []string{b.whKey(p, "lease")}, []string{owner, strconv.FormatInt(max(1, ms(ttl)), 10)}).AsInt64()
	if err != nil {
		return false, b.wrap("webhook lease", err)
	}
	return n == 1, nil
}

// Read implements webhook.Queue.
func (b *Broker) Read(ctx context.Context, p int, owner string, max int) ([]broker.QueueEntry, error) {
	key := b.whKey(p, "log")
	for attempt := 0; ; attempt++ {
		out, err := b.whRead(ctx, key, owner, max)
		if err == nil {
			return out, nil
		}
		if re, ok := rueidis.IsRedisErr(err); !ok || !strings.HasPrefix(re.Error(), "NOGROUP") || attempt > 0 {
			return nil, b.wrap("webhook read", err)
		}
		// A new stream (or one Redis lost): the group starts at its
		// beginning, so entries appended before it are read too.
		err = b.client.Do(ctx, b.client.B().XgroupCreate().Key(key).Group(webhookGroup).Id("0").Mkstream().Build()).Error()
		if re, ok := rueidis.IsRedisErr(err); err != nil && !(ok && strings.HasPrefix(re.Error(), "BUSYGROUP")) {
			return nil, b.wrap("webhook create group", err)
		}
	}
}

func (b *Broker) whRead(ctx context.Context, key, owner string, max int) ([]broker.QueueEntry, error) {
	// Entries read and not acknowledged, by any sender: oldest first.
	claim, err := b.client.Do(ctx, b.client.B().Xautoclaim().Key(key).Group(webhookGroup).Consumer(owner).
		MinIdleTime("0").Start("0-0").Count(int64(max)).Build()).ToArray()
	if err != nil {
		return nil, err
	}
	if len(claim) >= 2 {
		entries, err := claim[1].AsXRange()
		if err != nil {
			return nil, err
		}
		if out := queueEntries(entries); len(out) > 0 {
			return out, nil
		}
	}
	res, err := b.client.Do(ctx, b.client.B().Xreadgroup().Group(webhookGroup, owner).Count(int64(max)).
		Streams().Key(key).Id(">").Build()).AsXRead()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return queueEntries(res[key]), nil
}

func queueEntries(entries []rueidis.XRangeEntry) []broker.QueueEntry {
	out := make([]broker.QueueEntry, 0, len(entries))
	for _, e := range entries {
		if e.FieldValues == nil { // deleted meanwhile
			continue
		}
		out = append(out, broker.QueueEntry{ID: e.ID, Data: []byte(e.FieldValues["d"])})
	}
	return out
}

// Ack implements webhook.Queue: the entries leave the group's pending list
// and the stream.
func (b *Broker) Ack(ctx context.Context, p int, ids []string) error {
	key := b.whKey(p, "log")
	for _, res := range b.client.DoMulti(ctx,
		b.client.B().Xack().Key(key).Group(webhookGroup).Id(ids...).Build(),
		b.client.B().Xdel().Key(key).Id(ids...).Build(),
	) {
		if err := res.Error(); err != nil {
			return b.wrap("webhook ack", err)
		}
	}
	return nil
}

// Backlog implements webhook.Backlogger.
func (b *Broker) Backlog(ctx context.Context, p int) (int64, error) {
	n, err := b.client.Do(ctx, b.client.B().Xlen().Key(b.whKey(p, "log")).Build()).AsInt64()
	if err != nil {
		return 0, b.wrap("webhook backlog", err)
	}
	return n, nil
}

// LoadState implements webhook.Queue.
func (b *Broker) LoadState(ctx context.Context, p int) (map[string][]byte, error) {
	m, err := b.client.Do(ctx, b.client.B().Hgetall().Key(b.whKey(p, "state")).Build()).AsStrMap()
	if err != nil {
		return nil, b.wrap("webhook load state", err)
	}
	out := make(map[string][]byte, len(m))
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out, nil
}

// SaveState implements webhook.Queue.
func (b *Broker) SaveState(ctx context.Context, p int, set map[string][]byte, del []string) error {
	key := b.whKey(p, "state")
	var cmds rueidis.Commands
	if len(set) > 0 {
		hs := b.client.B().Hset().Key(key).FieldValue()
		for k, v := range set {
			hs = hs.FieldValue(k, rueidis.BinaryString(v))
		}
		cmds = append(cmds, hs.Build())
	}
	if len(del) > 0 {
		cmds = append(cmds, b.client.B().Hdel().Key(key).Field(del...).Build())
	}
	for _, res := range b.client.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return b.wrap("webhook save state", err)
		}
	}
	return nil
}

func (b *Broker) nodeKey(node string) string {
	return b.opts.Prefix + ":webhook:node:{" + node + "}"
}

// Beat implements webhook.Queue.
func (b *Broker) Beat(ctx context.Context, node string, ttl time.Duration) (bool, error) {
	n, err := beatScript.Exec(ctx, b.client, []string{b.nodeKey(node)}, []string{strconv.FormatInt(max(1, ms(ttl)), 10)}).AsInt64()
	if err != nil {
		return false, b.wrap("webhook beat", err)
	}
	return n == 1, nil
}

// beatScript sets a node's mark. KEYS: the mark. ARGV: ttl (ms). Returns
// 1 when the mark was there before.
var beatScript = rueidis.NewLuaScriptRetryable(`
local had = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
return had
`)

// Alive implements webhook.Queue.
func (b *Broker) Alive(ctx context.Context, nodes []string) (map[string]bool, error) {
	cmds := make(rueidis.Commands, len(nodes))
	for i, n := range nodes {
		cmds[i] = b.client.B().Exists().Key(b.nodeKey(n)).Build()
	}
	out := make(map[string]bool, len(nodes))
	for i, res := range b.client.DoMulti(ctx, cmds...) {
		n, err := res.AsInt64()
		if err != nil {
			return nil, b.wrap("webhook alive", err)
		}
		out[nodes[i]] = n == 1
	}
	return out, nil
}
