package server

import (
	"context"
	"fmt"
	"sync"

	"github.com/switchboardhq/switchboard/internal/consumer"
	"github.com/switchboardhq/switchboard/internal/consumer/kafka"
	"github.com/switchboardhq/switchboard/internal/consumer/postgres"
)

// consumers are the async consumers the configuration turns on (the
// outbox table, Kafka), run from Run until Shutdown.
type consumers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startConsumers builds the configured consumers and runs them in the
// background; they publish through the hub, each publish bounded by
// command_timeout. The configuration was validated, so building them
// fails only on a bug, which is logged.
func (s *Server) startConsumers() {
	cfg, h := s.cfg, s.hub
	publish := func(source string) consumer.PublishFunc {
		return func(ctx context.Context, channel string, data []byte, key string) (bool, error) {
			ctx, cancel := context.WithTimeout(ctx, cfg.CommandTimeout)
			defer cancel()
			r, err := h.PublishOnce(ctx, channel, data, source, key)
			return r.Duplicate, err
		}
	}
	var runs []func(context.Context) error
	if cfg.PostgresDSN != "" {
		c, err := postgres.New(postgres.Options{
			DSN:          cfg.PostgresDSN,
			Table:        cfg.PostgresTable,
			PollInterval: cfg.PostgresPollInterval,
			BatchSize:    cfg.PostgresBatchSize,
			Partitions:   cfg.PostgresPartitions,
			Publish:      publish("postgres"),
			Logger:       s.log,
			Metrics:      s.metrics,
		})
		if err != nil {
			s.log.Error("outbox consumer not started", "err", err)
		} else {
			runs = append(runs, c.Run)
		}
	}
	if len(cfg.KafkaBrokers) > 0 {
		c, err := kafka.New(kafka.Options{
			Brokers: cfg.KafkaBrokers,
			Topics:  cfg.KafkaTopics,
			Group:   cfg.KafkaGroup,
			Publish: publish("kafka"),
			Logger:  s.log,
			Metrics: s.metrics,
		})
		if err != nil {
			s.log.Error("Kafka consumer not started", "err", err)
		} else {
			runs = append(runs, c.Run)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cs := &consumers{cancel: cancel}
	for _, run := range runs {
		cs.wg.Go(func() {
			if err := run(ctx); err != nil {
				s.log.Error("consumer stopped", "err", err)
			}
		})
	}
	s.consumers = cs
}

// stopConsumers stops the consumers and waits for them (a Kafka member
// commits and leaves its group) until ctx is done. Shutdown calls it
// first: the consumers publish through the hub.
func (s *Server) stopConsumers(ctx context.Context) error {
	cs := s.consumers
	if cs == nil {
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
