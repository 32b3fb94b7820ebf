// Package kafka is the Kafka consumer: a member of a consumer group that
// publishes the records of its topics and commits their offsets only once
// they are published.
//
// A record's channel is its "channel" header, or else its key; its value
// is the publication's data (one JSON value); its "idempotency-key"
// header, when present, is the idempotency key, else the key is derived
// from the record's topic, partition and offset. Records of one partition
// are published in offset order; a producer that keys records by channel
// (or sets the same key for every record of a channel) puts each channel
// in one partition, so each channel is published in order.
//
// Rebalances are held while a polled batch is published and its offsets
// committed (kgo.BlockRebalanceOnPoll), so a partition changes owner only
// between batches, at a committed offset. A member that dies mid-batch
// leaves its records uncommitted; the next owner publishes them again
// with the same idempotency keys, which the broker turns into no-ops.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/consumer"
	"github.com/switchboardhq/switchboard/internal/metrics"
)

// name is the consumer's name in metrics and in the hub's source label.
const name = "kafka"

// The record headers the consumer reads.
const (
	// ChannelHeader names the channel; without it the record key does.
	ChannelHeader = "channel"
	// KeyHeader carries the idempotency key.
	KeyHeader = "idempotency-key"
)

// Options configure a Consumer. Brokers, Topics, Publish and Metrics are
// required.
type Options struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string
	// Topics are the topics to consume.
	Topics []string
	// Group is the consumer group. Default "switchboard".
	Group string
	// BatchSize is the most records published between two commits.
	// Default 500.
	BatchSize int
	// Publish publishes one record.
	Publish consumer.PublishFunc
	// Logger receives the consumer's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics counts records. Required.
	Metrics *metrics.Metrics
	// ClientOptions are added to the Kafka client's options (TLS, SASL,
	// timeouts; tests shorten the group's timeouts).
	ClientOptions []kgo.Opt
}

// Consumer is a consumer group member. Create it with New and run it with
// Run.
type Consumer struct {
	opts Options
	log  *slog.Logger

	// lag is the records left per partition as of its last fetch.
	// Guarded by mu: the rebalance callbacks drop revoked partitions.
	mu  sync.Mutex
	lag map[string]map[int32]int64
}

// New checks opts and returns a consumer; it does not connect yet.
func New(opts Options) (*Consumer, error) {
	if len(opts.Brokers) == 0 || len(opts.Topics) == 0 {
		return nil, errors.New("kafka consumer: brokers and topics are required")
	}
	if opts.Publish == nil || opts.Metrics == nil {
		return nil, errors.New("kafka consumer: Publish and Metrics are required")
	}
	if opts.Group == "" {
		opts.Group = "switchboard"
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Consumer{
		opts: opts,
		log:  opts.Logger.With("component", "consumer", "consumer", name, "group", opts.Group),
		lag:  map[string]map[int32]int64{},
	}, nil
}

// Run consumes until ctx is done, then commits what it published, leaves
// the group and returns nil. Failures to publish or to commit are logged,
// counted and retried; it returns an error only when the client cannot be
// created.
func (c *Consumer) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(c.opts.Brokers...),
		kgo.ConsumerGroup(c.opts.Group),
		kgo.ConsumeTopics(c.opts.Topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(c.forget),
		kgo.OnPartitionsLost(c.forget),
		kgo.WithLogger(kgoLogger{c.log}),
	}, c.opts.ClientOptions...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	defer cl.CloseAllowingRebalance()
	for {
		fetches := cl.PollRecords(ctx, c.opts.BatchSize)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			c.opts.Metrics.ConsumerErrors.WithLabelValues(name).Inc()
			c.log.Warn("fetch failed", "topic", topic, "partition", p, "err", err)
		})
		done := c.publishFetches(ctx, cl, fetches)
		c.commit(ctx, cl, done)
		cl.AllowRebalance()
	}
}

// publishFetches publishes the polled records, each partition's in
// offset order, and returns the last record published of each partition.
// When ctx ends it stops at once: what follows in each partition stays
// uncommitted. Before it waits to retry a record, it commits what it
// published so far: should the group hand the partition to another member
// meanwhile, that member starts at the stuck record, and the two publish
// the rest in the same order, the later of each pair a no-op.
func (c *Consumer) publishFetches(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches) []*kgo.Record {
	var done []*kgo.Record
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		var last *kgo.Record
		stuck := func() {
			if last != nil {
				c.commit(ctx, cl, append(done, last))
			} else {
				c.commit(ctx, cl, done)
			}
		}
		for _, r := range p.Records {
			if !c.publish(ctx, r, stuck) {
				break
			}
			last = r
		}
		if last == nil {
			return
		}
		done = append(done, last)
		c.mu.Lock()
		if c.lag[p.Topic] == nil {
			c.lag[p.Topic] = map[int32]int64{}
		}
		c.lag[p.Topic][p.Partition] = max(0, p.HighWatermark-last.Offset-1)
		c.mu.Unlock()
	})
	c.setLag()
	return done
}

// commit commits the offsets after done, on through a shutdown (ctx done)
// within a few seconds. A failed commit is logged and counted: the records
// will be published again, as duplicates, by the partition's next owner.
func (c *Consumer) commit(ctx context.Context, cl *kgo.Client, done []*kgo.Record) {
	if len(done) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := cl.CommitRecords(cctx, done...); err != nil {
		c.opts.Metrics.ConsumerErrors.WithLabelValues(name).Inc()
		c.log.Warn("commit failed; the records will be published again as duplicates", "err", err)
	}
}

// publish publishes one record, retrying while the engine cannot take it,
// until ctx is done (then it returns false); stuck is called before the
// first retry. An invalid record is logged, counted and done with.
func (c *Consumer) publish(ctx context.Context, r *kgo.Record, stuck func()) bool {
	channel, key := Fields(r)
	for attempt := 0; ; attempt++ {
		res, err := consumer.Publish(ctx, c.opts.Publish, channel, r.Value, key)
		if res != "" {
			if res == consumer.Invalid {
				c.log.Warn("skipped an invalid record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "channel", channel, "err", err)
			}
			c.opts.Metrics.ConsumerRecords.WithLabelValues(name, string(res)).Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.opts.Metrics.ConsumerErrors.WithLabelValues(name).Inc()
		c.log.Warn("publish failed; retrying", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		if attempt == 0 {
			stuck()
		}
		if !consumer.Sleep(ctx, consumer.Backoff(attempt)) {
			return false
		}
	}
}

// Fields returns a record's channel (its channel header, else its key)
// and idempotency key (its idempotency-key header when not empty, else
// one derived from its topic, partition and offset). When a header comes
// more than once, the last one counts.
func Fields(r *kgo.Record) (channel, key string) {
	channel = string(r.Key)
	for _, h := range r.Headers {
		switch h.Key {
		case ChannelHeader:
			channel = string(h.Value)
		case KeyHeader:
			key = string(h.Value)
		}
	}
	if key == "" {
		key = consumer.DerivedKey("kafka:"+r.Topic, strconv.Itoa(int(r.Partition))+":"+strconv.FormatInt(r.Offset, 10))
	}
	return channel, key
}

// forget drops revoked or lost partitions from the lag.
func (c *Consumer) forget(_ context.Context, _ *kgo.Client, gone map[string][]int32) {
	c.mu.Lock()
	for topic, ps := range gone {
		for _, p := range ps {
			delete(c.lag[topic], p)
		}
	}
	c.mu.Unlock()
	c.setLag()
}

// setLag sets the lag gauge to the sum over the owned partitions.
func (c *Consumer) setLag() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum int64
	for _, ps := range c.lag {
		for _, n := range ps {
			sum += n
		}
	}
	c.opts.Metrics.ConsumerLagRecords.WithLabelValues(name).Set(float64(sum))
}
