package server

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/broker/memory"
	natsbroker "github.com/switchboardhq/switchboard/internal/broker/nats"
	redisbroker "github.com/switchboardhq/switchboard/internal/broker/redis"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/metrics"
	"github.com/switchboardhq/switchboard/internal/webhook"
)

// Every broker keeps a webhook queue.
var (
	_ webhook.Queue      = (*memory.Broker)(nil)
	_ webhook.Queue      = (*redisbroker.Broker)(nil)
	_ webhook.Queue      = (*natsbroker.Broker)(nil)
	_ webhook.Backlogger = (*memory.Broker)(nil)
	_ webhook.Backlogger = (*redisbroker.Broker)(nil)
	_ webhook.Backlogger = (*natsbroker.Broker)(nil)
)

// newWebhooks builds the webhook dispatcher when webhook_endpoint is set
// (nil otherwise), on the queue the broker keeps.
func newWebhooks(cfg config.Config, b broker.Broker, nodeID string, rejoin func(context.Context), m *metrics.Metrics, log *slog.Logger) (*webhook.Dispatcher, error) {
	if cfg.WebhookEndpoint == "" {
		return nil, nil
	}
	if cfg.WebhookSecret == "" {
		log.Warn("webhook_secret is not set: webhook requests are not signed, and the backend cannot tell them from forged ones")
	}
	q, ok := b.(webhook.Queue)
	if !ok {
		return nil, fmt.Errorf("server: webhooks: broker %q keeps no webhook queue", cfg.Broker)
	}
	d, err := webhook.New(webhook.Options{
		Endpoint:   cfg.WebhookEndpoint,
		Secret:     []byte(cfg.WebhookSecret),
		Queue:      q,
		NodeID:     nodeID,
		Partitions: cfg.WebhookPartitions,
		BatchSize:  cfg.WebhookBatchSize,
		Timeout:    cfg.WebhookTimeout,
		BackoffMin: cfg.WebhookBackoffMin,
		BackoffMax: cfg.WebhookBackoffMax,
		LeaseTTL:   cfg.WebhookLeaseTTL,
		Selected:   webhookSelection(cfg),
		Rejoin:     rejoin,
		Logger:     log,
		Metrics:    m,
	})
	if err != nil {
		return nil, fmt.Errorf("server: webhooks: %w", err)
	}
	return d, nil
}

// webhookSelection returns which events are sent for which channel: the
// top-level webhook_events, and for the channels of a namespace that sets
// its own list, that list for channel.* and member.* events.
func webhookSelection(cfg config.Config) func(channel, typ string) bool {
	top := cfg.WebhookEvents
	per := map[string][]string{}
	for _, ns := range cfg.Namespaces {
		if ns.WebhookEvents != nil {
			per[ns.Name] = ns.WebhookEvents
		}
	}
	return func(channel, typ string) bool {
		if channel != "" {
			if name, _, found := strings.Cut(channel, ":"); found {
				if list, ok := per[name]; ok {
					return slices.Contains(list, typ)
				}
			}
		}
		return slices.Contains(top, typ)
	}
}

// newNodeID returns a random node id, as the hub makes one: the webhook
// dispatcher needs it before the hub exists.
func newNodeID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))[:6]
}

// startWebhooks starts the webhook dispatcher, if any, once the hub (and
// so the broker) has started.
func (s *Server) startWebhooks(ctx context.Context) error {
	if s.hooks == nil {
		return nil
	}
	if err := s.hooks.Start(ctx); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// stopWebhooks stops sending webhooks, before the hub closes its clients:
// their leaves are still written to the queue, for the next sender of
// their partitions (with a shared broker).
func (s *Server) stopWebhooks() {
	if s.hooks != nil {
		s.hooks.Stop()
	}
}
