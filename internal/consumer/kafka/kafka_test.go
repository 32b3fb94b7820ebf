package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/switchboardhq/switchboard/internal/consumer/consumertest"
	"github.com/switchboardhq/switchboard/internal/consumer/kafka"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

// No Kafka server runs in the test environment: these tests run against
// franz-go's in-process fake cluster (kfake), which speaks the Kafka
// protocol over loopback TCP, consumer groups and offset commits included.

// cluster starts a fake Kafka cluster with topic "events" of partitions
// partitions and returns its addresses and a producer.
func cluster(t *testing.T, partitions int32) ([]string, *kgo.Client) {
	t.Helper()
	addrs, p, _ := fakeCluster(t, partitions)
	return addrs, p
}

// fakeCluster is cluster that also returns the cluster, to control it.
func fakeCluster(t *testing.T, partitions int32) ([]string, *kgo.Client, *kfake.Cluster) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	addrs := c.ListenAddrs()
	p, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return addrs, p, c
}

// member is a consumer group member running in the background.
type member struct {
	cancel  context.CancelFunc
	done    chan error
	metrics *metrics.Metrics
	once    sync.Once
	err     error
}

func join(t *testing.T, brokers []string, publish func(context.Context, string, []byte, string) (bool, error)) *member {
	t.Helper()
	m := &member{done: make(chan error, 1), metrics: metrics.New(prometheus.NewRegistry())}
	c, err := kafka.New(kafka.Options{
		Brokers: brokers, Topics: []string{"events"}, Group: "switchboard-test",
		BatchSize: 100, Publish: publish, Metrics: m.metrics,
		ClientOptions: []kgo.Opt{kgo.FetchMaxWait(100 * time.Millisecond), kgo.HeartbeatInterval(100 * time.Millisecond)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- c.Run(ctx) }()
	t.Cleanup(m.leave)
	return m
}

// leave stops the member, which commits and leaves the group.
func (m *member) leave() {
	m.once.Do(func() {
		m.cancel()
		m.err = <-m.done
	})
}

func (m *member) count(result string) int {
	return int(testutil.ToFloat64(m.metrics.ConsumerRecords.WithLabelValues("kafka", result)))
}

// produce writes n records from seq on, spread over channels and keyed
// by channel (so each channel stays in one partition), and records each
// channel's data in order. Every other record names its channel in the
// channel header too; two in three carry an idempotency-key header (the
// others get a key derived from their offset). Every 100th record repeats
// the idempotency key of an earlier record of its channel: it must not be
// published, so it is not recorded.
func produce(ctx context.Context, t *testing.T, p *kgo.Client, channels []string, seq, n int, want map[string][]string, keys map[string]string) {
	t.Helper()
	recs := make([]*kgo.Record, 0, n)
	for i := seq; i < seq+n; i++ {
		ch := channels[i%len(channels)]
		data := fmt.Sprintf(`"r%d"`, i)
		rec := &kgo.Record{Key: []byte(ch), Value: []byte(data)}
		if i%2 == 1 {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: kafka.ChannelHeader, Value: []byte(ch)})
		}
		switch {
		case i%100 == 99 && keys[ch] != "":
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: kafka.KeyHeader, Value: []byte(keys[ch])})
		case i%3 == 0:
			want[ch] = append(want[ch], data)
		default:
			keys[ch] = fmt.Sprintf("k%d", i)
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: kafka.KeyHeader, Value: []byte(keys[ch])})
			want[ch] = append(want[ch], data)
		}
		recs = append(recs, rec)
	}
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestKafkaExactlyOnceInOrderAcrossRebalance produces 10,000 records (a
// few more if the second member is slow to join) to four partitions while
// a member consumes them; a second member joins mid-way (a rebalance hands
// it some partitions), then the first leaves (the second takes them all).
// Every record is published exactly once, in order per channel.
func TestKafkaExactlyOnceInOrderAcrossRebalance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, p := cluster(t, 4)
	channels := make([]string, 32)
	for i := range channels {
		channels[i] = fmt.Sprintf("feed:%d", i)
	}
	sink := consumertest.NewSink(t, channels...)
	want, keys := map[string][]string{}, map[string]string{}
	expected := func() int {
		n := 0
		for _, w := range want {
			n += len(w)
		}
		return n
	}

	a := join(t, brokers, sink.Publish)
	produce(ctx, t, p, channels, 0, 4000, want, keys)
	sink.WaitFor(ctx, t, 3000)

	b := join(t, brokers, sink.Publish)
	seq := 4000
	for ; seq < 7000; seq += 500 {
		produce(ctx, t, p, channels, seq, 500, want, keys)
		sink.WaitFor(ctx, t, expected())
	}
	// Both members take part: b gets partitions in the rebalance. Its
	// join may take longer than the records above on a loaded machine,
	// so records keep coming until it has published some.
	for b.count("published") == 0 {
		produce(ctx, t, p, channels, seq, 20, want, keys)
		seq += 20
		select {
		case <-ctx.Done():
			t.Fatal("the second member never published: no rebalance")
		case <-time.After(20 * time.Millisecond):
		}
	}

	a.leave()
	if a.err != nil {
		t.Fatal(a.err)
	}
	rest := max(10000-seq, 1000)
	produce(ctx, t, p, channels, seq, rest, want, keys)
	seq += rest
	sink.WaitFor(ctx, t, expected())
	b.leave()

	sink.Check(t, want)
	published := a.count("published") + b.count("published")
	dups := a.count("duplicate") + b.count("duplicate")
	if published != expected() || published+dups != seq {
		t.Errorf("metrics: %d published, %d duplicates; want %d published and %d duplicates", published, dups, expected(), seq-expected())
	}
	t.Logf("a published %d, b %d; %d duplicates", a.count("published"), b.count("published"), dups)
}

// TestKafkaUncommittedRecordsPublishedAgain makes the cluster refuse every
// offset commit while a member publishes 1,000 records, as if it had died
// before committing: the next member of the group starts from the
// beginning again, and the idempotency keys (given or derived from the
// offset) turn every repeat into a no-op.
func TestKafkaUncommittedRecordsPublishedAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	brokers, p, kc := fakeCluster(t, 2)
	var refuse atomic.Bool
	refuse.Store(true)
	kc.ControlKey(kmsg.OffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kc.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		creq := req.(*kmsg.OffsetCommitRequest)
		resp := creq.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range creq.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	channels := []string{"a", "b", "c", "d", "e", "f", "g"}
	sink := consumertest.NewSink(t, channels...)
	want, keys := map[string][]string{}, map[string]string{}
	produce(ctx, t, p, channels, 0, 1000, want, keys)
	first := join(t, brokers, sink.Publish)
	n := 0
	for _, w := range want {
		n += len(w)
	}
	sink.WaitFor(ctx, t, n)
	for first.count("published")+first.count("duplicate") < 1000 {
		select {
		case <-ctx.Done():
			t.Fatal("the first member did not take every record")
		case <-time.After(10 * time.Millisecond):
		}
	}
	first.leave()
	refuse.Store(false)

	second := join(t, brokers, sink.Publish)
	for second.count("duplicate") < 1000 {
		select {
		case <-ctx.Done():
			t.Fatalf("the second member took %d records again, want 1000", second.count("duplicate"))
		case <-time.After(10 * time.Millisecond):
		}
	}
	produce(ctx, t, p, channels, 1000, 500, want, keys)
	n = 0
	for _, w := range want {
		n += len(w)
	}
	sink.WaitFor(ctx, t, n)
	second.leave()
	sink.Check(t, want)
	if got := second.count("published"); got+first.count("published") != n {
		t.Errorf("published %d + %d, want %d", first.count("published"), got, n)
	}
	if got := int(testutil.ToFloat64(first.metrics.ConsumerErrors.WithLabelValues("kafka"))); got == 0 {
		t.Error("no failed commit counted")
	}
}

// TestKafkaRetriesWhileBrokerDown fails every publish for a while in the
// middle of a stream, as a broker outage would: the member retries the
// record it is at, skips nothing, and every record is published once, in
// order.
func TestKafkaRetriesWhileBrokerDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers, p := cluster(t, 2)
	channels := []string{"a", "b", "c"}
	sink := consumertest.NewSink(t, channels...)
	want, keys := map[string][]string{}, map[string]string{}
	produce(ctx, t, p, channels, 0, 600, want, keys)
	var calls atomic.Int64
	flaky := func(ctx context.Context, ch string, data []byte, key string) (bool, error) {
		if n := calls.Add(1); n > 200 && n <= 203 {
			return false, errors.New("broker down")
		}
		return sink.Publish(ctx, ch, data, key)
	}
	m := join(t, brokers, flaky)
	n := 0
	for _, w := range want {
		n += len(w)
	}
	sink.WaitFor(ctx, t, n)
	m.leave()
	sink.Check(t, want)
	if got := int(testutil.ToFloat64(m.metrics.ConsumerErrors.WithLabelValues("kafka"))); got != 3 {
		t.Errorf("%d errors counted, want 3", got)
	}
}

// TestKafkaInvalidRecords checks the policy for records that can never be
// published: they are skipped, logged and counted as invalid, their
// offsets committed with the rest, and the records after them in the
// partition are published.
func TestKafkaInvalidRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	brokers, p := cluster(t, 1)
	recs := []*kgo.Record{
		{Key: []byte("news"), Value: []byte(`"first"`)},
		{Value: []byte(`"no channel"`)},
		{Key: []byte("bad channel"), Value: []byte(`"spaces"`)},
		{Key: []byte("news"), Value: []byte(`not json`)},
		{Key: []byte("news")},
		{Key: []byte("news"), Value: []byte(`"long key"`), Headers: []kgo.RecordHeader{{Key: kafka.KeyHeader, Value: make([]byte, 65)}}},
		{Key: []byte("unknown:ns"), Value: []byte(`"refused by the engine"`)},
		{Key: []byte("ignored"), Value: []byte(`"last"`), Headers: []kgo.RecordHeader{{Key: kafka.ChannelHeader, Value: []byte("news")}}},
	}
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	sink := consumertest.NewSink(t, "news", "bad channel", "unknown:ns", "ignored")
	refusing := func(ctx context.Context, ch string, data []byte, key string) (bool, error) {
		if ch == "unknown:ns" {
			return false, protocol.ErrInvalidChannel.WithMessage("unknown namespace")
		}
		return sink.Publish(ctx, ch, data, key)
	}
	m := join(t, brokers, refusing)
	sink.WaitFor(ctx, t, 2)
	for m.count("invalid") < 6 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d records counted invalid, want 6", m.count("invalid"))
		case <-time.After(10 * time.Millisecond):
		}
	}
	m.leave()
	sink.Check(t, map[string][]string{"news": {`"first"`, `"last"`}})
	if got := m.count("invalid"); got != 6 {
		t.Errorf("%d records counted invalid, want 6", got)
	}

	// The offsets were committed: a new member of the group starts after
	// them and publishes nothing again.
	again := join(t, brokers, refusing)
	if err := p.ProduceSync(ctx, &kgo.Record{Key: []byte("news"), Value: []byte(`"after"`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	sink.WaitFor(ctx, t, 3)
	again.leave()
	sink.Check(t, map[string][]string{"news": {`"first"`, `"last"`, `"after"`}})
	if got := again.count("duplicate") + again.count("invalid"); got != 0 {
		t.Errorf("the new member took %d old records again", got)
	}
}
