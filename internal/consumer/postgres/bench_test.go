package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/consumer/consumertest"
	"github.com/switchboardhq/switchboard/internal/consumer/postgres"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// BenchmarkOutbox measures how fast one node drains an outbox of b.N rows
// over 64 channels into the in-memory broker, by batch size (rows/s).
func BenchmarkOutbox(b *testing.B) {
	for _, batch := range []int{10, 100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			dsn := testenv.Postgres(b)
			pool, err := pgxpool.New(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			if _, err := pool.Exec(ctx, postgres.Schema("switchboard_outbox")); err != nil {
				b.Fatal(err)
			}
			channels := make([]string, 64)
			for i := range channels {
				channels[i] = fmt.Sprintf("c%d", i)
			}
			if _, err := pool.Exec(ctx, `INSERT INTO switchboard_outbox (channel, data) SELECT 'c' || (i % 64), to_jsonb(i) FROM generate_series(1, $1) i`, b.N); err != nil {
				b.Fatal(err)
			}
			sink := consumertest.NewSink(b, channels...)
			c, err := postgres.New(postgres.Options{DSN: dsn, Publish: sink.Publish, Metrics: metrics.New(prometheus.NewRegistry()), BatchSize: batch})
			if err != nil {
				b.Fatal(err)
			}
			cctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			b.ResetTimer()
			start := time.Now()
			go func() { done <- c.Run(cctx) }()
			sink.WaitFor(ctx, b, b.N)
			elapsed := time.Since(start)
			b.StopTimer()
			stop()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
		})
	}
}
