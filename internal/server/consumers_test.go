package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/consumer/postgres"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// TestOutboxToSubscriber inserts rows into the outbox table of a node
// configured with consumer_postgres_dsn: a WebSocket subscriber gets them
// as publications, in order, each once, and the node counts them.
func TestOutboxToSubscriber(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := testenv.Postgres(t)
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(ctx, postgres.Schema("switchboard_outbox")); err != nil {
		t.Fatal(err)
	}
	ts := start(t, func(c *config.Config) {
		c.PostgresDSN = dsn
		c.PostgresPollInterval = time.Hour // NOTIFY must wake it
	})
	sub := ts.dial()
	sub.Subscribe("orders")
	// One transaction, as an application writes its own rows with the
	// outbox's; the second row repeats the first's idempotency key.
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO switchboard_outbox (channel, data, idempotency_key) VALUES ('orders', '{"id": 1}', 'order-1')`,
		`INSERT INTO switchboard_outbox (channel, data, idempotency_key) VALUES ('orders', '{"id": 1, "again": true}', 'order-1')`,
		`INSERT INTO switchboard_outbox (channel, data) VALUES ('orders', '{"id": 2}')`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{1, 2} {
		m := sub.Next()
		expectPub(t, m, "orders", float64(i+1))
		if d := m["data"].(map[string]any); d["id"] != want || d["again"] != nil {
			t.Fatalf("publication %d: %v", i+1, m)
		}
	}
	sub.Silent(100 * time.Millisecond)
	if got := ts.metric(`switchboard_consumer_records_total{consumer="postgres",result="published"}`); got != 2 {
		t.Errorf("published: %v, want 2", got)
	}
	if got := ts.metric(`switchboard_consumer_records_total{consumer="postgres",result="duplicate"}`); got != 1 {
		t.Errorf("duplicate: %v, want 1", got)
	}
	if got := ts.metric(`switchboard_publications_total{source="postgres"}`); got != 2 {
		t.Errorf("switchboard_publications_total: %v, want 2", got)
	}
}

// TestKafkaToSubscriber produces records to a fake Kafka cluster (no Kafka
// server runs in the test environment) that a node configured with
// consumer_kafka_brokers consumes: a WebSocket subscriber gets them as
// publications.
func TestKafkaToSubscriber(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	ts := start(t, func(c *config.Config) {
		c.KafkaBrokers = kc.ListenAddrs()
		c.KafkaTopics = []string{"events"}
	})
	sub := ts.dial()
	sub.Subscribe("scores")
	p, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := []*kgo.Record{
		{Key: []byte("scores"), Value: []byte(`{"goal": 1}`)},
		{Key: []byte("scores"), Value: []byte(`{"goal": 2}`)},
	}
	if err := p.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		// The first waits for the node to join the group.
		m, err := sub.NextErr(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		expectPub(t, m, "scores", float64(i+1))
		if d := m["data"].(map[string]any); d["goal"] != float64(i+1) {
			t.Fatalf("publication %d: %v", i+1, m)
		}
	}
}

// TestOutboxBadDSN: a connection string that does not parse stops the
// node from starting, with an error naming the key.
func TestOutboxBadDSN(t *testing.T) {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.PostgresDSN = "postgres://app@db:port/app"
	_, err := newServer(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "consumer_postgres_dsn") {
		t.Fatalf("err = %v, want one naming consumer_postgres_dsn", err)
	}
}
