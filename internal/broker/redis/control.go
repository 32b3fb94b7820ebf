package redis

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/switchboardhq/switchboard/internal/broker"
)

var _ broker.Controller = (*Broker)(nil)

// controlName is the Pub/Sub channel the nodes talk to each other on. It
// is an ordinary (not sharded) Pub/Sub channel, also in a Redis Cluster,
// which delivers such messages on every one of its nodes: control messages
// are few, and no slot's move or master's failure can interrupt them for
// longer than it takes to reconnect to any node.
func (b *Broker) controlName() string { return b.opts.Prefix + ":control" }

// subscribeControl subscribes conn to the control channel when the handler
// takes control messages. Called by the Pub/Sub loop for each connection.
func (b *Broker) subscribeControl(ctx context.Context, conn rueidis.DedicatedClient) error {
	if _, ok := b.handler.(broker.ControlHandler); !ok {
		return nil
	}
	if err := conn.Do(ctx, conn.B().Subscribe().Channel(b.controlName()).Build()).Error(); err != nil {
		return fmt.Errorf("subscribe to control: %w", err)
	}
	return nil
}

// PublishControl implements broker.Controller: every started node on the
// same Redis and prefix receives data, this one included, once its
// Pub/Sub connection is up.
func (b *Broker) PublishControl(ctx context.Context, data []byte) error {
	if b.closed.Load() {
		return fmt.Errorf("redis broker: control: %w", broker.ErrClosed)
	}
	cmd := b.client.B().Publish().Channel(b.controlName()).Message(rueidis.BinaryString(data)).Build()
	if err := b.client.Do(ctx, cmd).Error(); err != nil {
		return b.wrap("control", err)
	}
	return nil
}
