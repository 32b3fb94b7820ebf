package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	natsbroker "github.com/switchboardhq/switchboard/internal/broker/nats"
	redisbroker "github.com/switchboardhq/switchboard/internal/broker/redis"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	"github.com/switchboardhq/switchboard/internal/config"
)

// newBroker connects the configured broker: the in-memory one, Redis or
// NATS. Remote brokers are also the presence store.
func newBroker(cfg config.Config, log *slog.Logger) (broker.Broker, broker.PresenceStore, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	switch {
	case cfg.Broker == "memory":
		return memory.New(memory.Options{}), memory.NewPresence(), nil
	case strings.HasPrefix(cfg.Broker, "redis://"), strings.HasPrefix(cfg.Broker, "rediss://"):
		b, err := redisbroker.New(ctx, redisbroker.Options{URL: cfg.Broker, Logger: log.With("component", "redis")})
		if err != nil {
			return nil, nil, fmt.Errorf("server: redis broker: %w", err)
		}
		return b, b, nil
	case strings.HasPrefix(cfg.Broker, "nats://"):
		b, err := natsbroker.New(ctx, natsOptions(cfg, log))
		if err != nil {
			return nil, nil, fmt.Errorf("server: nats broker: %w", err)
		}
		return b, b, nil
	default:
		return nil, nil, fmt.Errorf("server: unknown broker %q", cfg.Broker)
	}
}

// natsOptions maps the configuration onto the NATS broker's options. The
// stream keeps as many publications per channel as the largest history
// size asks for, and presence entries at least as long as presence_ttl.
func natsOptions(cfg config.Config, log *slog.Logger) natsbroker.Options {
	size, _ := cfg.LargestHistory()
	maxAge := cfg.NATSHistoryMaxAge
	if maxAge == 0 {
		maxAge = -1 // no limit, as the broker spells it
	}
	return natsbroker.Options{
		URL:            cfg.Broker,
		Prefix:         cfg.NATSPrefix,
		Replicas:       cfg.NATSReplicas,
		MemoryStorage:  cfg.NATSStorage == "memory",
		HistoryMaxSize: size, // 0 (no history anywhere): the broker's default
		HistoryMaxAge:  maxAge,
		PresenceMaxAge: max(time.Hour, cfg.PresenceTTL),
		Logger:         log.With("component", "nats"),
		WebhookAckWait: cfg.WebhookLeaseTTL,

		IdempotencyMaxWindow: cfg.LargestIdempotencyWindow(),
	}
}

// pinger is implemented by brokers that can tell whether their backend
// answers now.
type pinger interface {
	Ping(ctx context.Context) error
}
