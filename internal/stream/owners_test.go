package stream_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/internal/stream"
)

// sharedOwners is the store of several nodes' claims, as the broker's
// presence store is for a cluster; node returns one node's view.
type sharedOwners struct {
	mu       sync.Mutex
	owner    map[string]string // path -> node
	fail     error             // returned by every Claim when set
	released []string          // node/path, in order
}

type nodeOwners struct {
	s    *sharedOwners
	node string
}

func (s *sharedOwners) node(name string) stream.Owners { return &nodeOwners{s, name} }

func (n *nodeOwners) Claim(path string) error {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	if n.s.fail != nil {
		return n.s.fail
	}
	if o, ok := n.s.owner[path]; ok && o != n.node {
		return fmt.Errorf("%w: live on %s", stream.ErrPublisherExists, o)
	}
	n.s.owner[path] = n.node
	return nil
}

func (n *nodeOwners) Release(path string) {
	n.s.mu.Lock()
	defer n.s.mu.Unlock()
	if n.s.owner[path] == n.node {
		delete(n.s.owner, path)
	}
	n.s.released = append(n.s.released, n.node+"/"+path)
}

// TestOwners: with Options.Owners, a path live on another node is
// refused and stays free here; a stream's end (close, kick, shutdown)
// releases its claim once; a claim that fails releases nothing.
func TestOwners(t *testing.T) {
	shared := &sharedOwners{owner: map[string]string{}}
	a := stream.NewRegistry(stream.Options{Owners: shared.node("a")})
	b := stream.NewRegistry(stream.Options{Owners: shared.node("b")})
	defer a.Close()
	defer b.Close()
	pub, err := a.Publish("live/x", stream.PublisherInfo{}, avTracks())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish("live/x", stream.PublisherInfo{}, avTracks()); !errors.Is(err, stream.ErrPublisherExists) || stream.StatusCode(err) != 409 {
		t.Fatalf("second publisher on another node: %v", err)
	}
	if _, err := b.Get("live/x"); !errors.Is(err, stream.ErrNotFound) {
		t.Fatalf("the refused path is held on b: %v", err)
	}
	if !pub.Stream().Claimed() {
		t.Fatal("a's stream is not claimed")
	}
	pub.Close()
	pub.Close()
	if pub.Stream().Claimed() || len(shared.released) != 1 || shared.released[0] != "a/live/x" {
		t.Fatalf("after close: claimed %v, released %v", pub.Stream().Claimed(), shared.released)
	}
	if _, err := b.Publish("live/x", stream.PublisherInfo{}, avTracks()); err != nil {
		t.Fatalf("publish on b once a's ended: %v", err)
	}
	if err := b.Kick("live/x"); err != nil {
		t.Fatal(err)
	}
	if _, ok := shared.owner["live/x"]; ok || len(shared.released) != 2 {
		t.Fatalf("after kick: owners %v, released %v", shared.owner, shared.released)
	}

	shared.fail = errors.New("broker down")
	if _, err := a.Publish("live/y", stream.PublisherInfo{}, avTracks()); err == nil || !errors.Is(err, shared.fail) {
		t.Fatalf("publish while claims fail: %v", err)
	}
	if _, err := a.Get("live/y"); !errors.Is(err, stream.ErrNotFound) || len(shared.released) != 2 {
		t.Fatalf("after a failed claim: %v, released %v", err, shared.released)
	}
	shared.fail = nil
	if _, err := a.Publish("live/y", stream.PublisherInfo{}, avTracks()); err != nil {
		t.Fatalf("publish once claims work again: %v", err)
	}
	a.Close()
	if _, ok := shared.owner["live/y"]; ok {
		t.Fatalf("shutdown kept the claim: %v", shared.owner)
	}
}
