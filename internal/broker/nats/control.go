package nats

import (
	"context"
	"fmt"

	gonats "github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard/internal/broker"
)

var _ broker.Controller = (*Broker)(nil)

// controlSubject is the core subject nodes talk to each other on.
func (b *Broker) controlSubject() string { return b.opts.Prefix + ".ctl" }

// startControl subscribes to the control subject when the handler takes
// control messages. Core NATS delivers each message once to every
// subscribed connection, this node's included.
func (b *Broker) startControl(h broker.Handler) error {
	ch, ok := h.(broker.ControlHandler)
	if !ok {
		return nil
	}
	_, err := b.nc.Subscribe(b.controlSubject(), func(m *gonats.Msg) {
		ch.HandleControl(m.Data)
	})
	if err != nil {
		return fmt.Errorf("nats broker: subscribe to control: %w", err)
	}
	return nil
}

// PublishControl implements broker.Controller.
func (b *Broker) PublishControl(ctx context.Context, data []byte) error {
	if b.closed.Load() {
		return fmt.Errorf("nats broker: control: %w", broker.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nats broker: control: %w", err)
	}
	if err := b.nc.Publish(b.controlSubject(), data); err != nil {
		return b.fail("control", err)
	}
	return nil
}
