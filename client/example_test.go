package client_test

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboardhq/switchboard/client"
)

// exampleNode starts a Switchboard node in this process on a free loopback
// port, for the examples; a real program dials its own server.
func exampleNode() *node {
	n, err := runNode("127.0.0.1:0", nil)
	if err != nil {
		panic(err)
	}
	return n
}

// A client that subscribes to a channel and publishes to it. The
// subscription is kept across reconnects; OnGap is where an application
// reloads its state when history could not cover a disconnection.
func ExampleClient() {
	n := exampleNode()
	defer n.stop()

	c := client.New(n.url(), client.Options{})
	defer c.Close()
	ctx := context.Background()
	if err := c.Connect(ctx); err != nil {
		fmt.Println(err)
		return
	}
	got := make(chan client.Publication, 1)
	_, err := c.Subscribe(ctx, "news", client.SubscribeOptions{
		OnPublication: func(p client.Publication) { got <- p },
		OnGap:         func(g client.Gap) { fmt.Println("reload news:", g.Reason) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := c.Publish(ctx, "news", map[string]string{"title": "Hello"})
	if err != nil {
		fmt.Println(err)
		return
	}
	p := <-got
	fmt.Println("published at offset", res.Offset)
	fmt.Println("received", p.Offset, string(p.Data))
	// Output:
	// published at offset 1
	// received 1 {"title":"Hello"}
}

// A publication made before the client is connected waits in the outbox
// and goes out, with its idempotency key, once it is.
func ExampleClient_Publish() {
	n := exampleNode()
	defer n.stop()

	queued, acked := make(chan struct{}), make(chan struct{})
	c := client.New(n.url(), client.Options{
		OnOutbox: func(e client.OutboxEntry) {
			fmt.Println(e.Channel, e.State)
			switch e.State {
			case client.OutboxQueued:
				close(queued)
			case client.OutboxAcked:
				fmt.Println("offset", e.Offset)
				close(acked)
			}
		},
	})
	defer c.Close()
	ctx := context.Background()
	go func() {
		if _, err := c.Publish(ctx, "orders", "paid"); err != nil {
			fmt.Println(err)
		}
	}()
	<-queued
	if err := c.Connect(ctx); err != nil {
		fmt.Println(err)
		return
	}
	<-acked
	// Output:
	// orders queued
	// orders sent
	// orders acked
	// offset 1
}

// OnState reports every change of the connection's state.
func ExampleOptions_onState() {
	n := exampleNode()
	defer n.stop()

	connected := make(chan struct{}, 1)
	c := client.New(n.url(), client.Options{
		OnState: func(s client.StateChange) {
			fmt.Println(s.State)
			if s.State == client.StateConnected {
				connected <- struct{}{}
			}
		},
	})
	if err := c.Connect(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	<-connected
	c.Close()
	// Output:
	// connecting
	// connected
	// disconnected
}

// Delay spreads reconnects: each attempt waits a random time between zero
// and a ceiling that doubles up to Max (here with a fixed random number).
func ExampleBackoff_Delay() {
	b := client.Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	half := func() float64 { return 0.5 }
	for attempt := range 6 {
		fmt.Println(attempt, b.Delay(attempt, half))
	}
	// Output:
	// 0 50ms
	// 1 100ms
	// 2 200ms
	// 3 400ms
	// 4 500ms
	// 5 500ms
}
