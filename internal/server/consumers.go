package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/consumer"
	"github.com/switchboardhq/switchboard/internal/consumer/kafka"
	"github.com/switchboardhq/switchboard/internal/consumer/postgres"
	"github.com/switchboardhq/switchboard/internal/hub"
	"github.com/switchboardhq/switchboard/internal/metrics"
)

// consumers are the async consumers the configuration turns on (the
// outbox table, Kafka), run from Run until Shutdown.
type consumers struct {
	runs []func(ctx context.Context) error
	log  *slog.Logger

	// Set by start, used by stop.
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newConsumers builds the configured consumers; they publish through h,
// each publish bounded by command_timeout.
func newConsumers(cfg config.Config, h *hub.Hub, m *metrics.Metrics, log *slog.Logger) (*consumers, error) {
	cs := &consumers{log: log}
	publish := func(source string) consumer.PublishFunc {
		return func(ctx context.Context, channel string, data []byte, key string) (bool, error) {
			ctx, cancel := context.WithTimeout(ctx, cfg.CommandTimeout)
			defer cancel()
			r, err := h.PublishOnce(ctx, channel, data, source, key)
			return r.Duplicate, err
		}
	}
	if cfg.PostgresDSN != "" {
		c, err := postgres.New(postgres.Options{
			DSN:          cfg.PostgresDSN,
			Table:        cfg.PostgresTable,
			PollInterval: cfg.PostgresPollInterval,
			BatchSize:    cfg.PostgresBatchSize,
			Partitions:   cfg.PostgresPartitions,
			Publish:      publish("postgres"),
			Logger:       log,
			Metrics:      m,
		})
		if err != nil {
			return nil, fmt.Errorf("server: consumer_postgres_dsn: %w", err)
		}
		cs.runs = append(cs.runs, c.Run)
	}
	if len(cfg.KafkaBrokers) > 0 {
		c, err := kafka.New(kafka.Options{
			Brokers: cfg.KafkaBrokers,
			Topics:  cfg.KafkaTopics,
			Group:   cfg.KafkaGroup,
			Publish: publish("kafka"),
			Logger:  log,
			Metrics: m,
		})
		if err != nil {
			return nil, fmt.Errorf("server: consumer_kafka_brokers: %w", err)
		}
		cs.runs = append(cs.runs, c.Run)
	}
	return cs, nil
}

// start runs the consumers in the background.
func (cs *consumers) start() {
	ctx, cancel := context.WithCancel(context.Background())
	cs.cancel = cancel
	for _, run := range cs.runs {
		cs.wg.Go(func() {
			if err := run(ctx); err != nil {
				cs.log.Error("consumer stopped", "err", err)
			}
		})
	}
}

// stop stops the consumers and waits for them (a Kafka member commits
// and leaves its group) until ctx is done.
func (cs *consumers) stop(ctx context.Context) error {
	if cs.cancel == nil {
		return nil
	}
	cs.cancel()
	done := make(chan struct{})
	go func() {
		cs.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("server: consumers did not stop: %w", ctx.Err())
	}
}
