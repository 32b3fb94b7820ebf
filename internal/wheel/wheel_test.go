package wheel

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// member is a test member: its own slot and its name.
type member struct {
	id   int
	slot Slot
}

// recorder collects visits from the wheel's goroutine.
type recorder struct {
	visits chan int
}

func newRecorder() *recorder { return &recorder{visits: make(chan int, 1024)} }

func (r *recorder) visit(_ time.Time, m *member) { r.visits <- m.id }

// settle waits until the wheel has finished its current wake-up (its timer
// is armed again: the only waiter of the clock, which the wheel owns), then
// returns the visits made so far, sorted.
func settle(t *testing.T, clk *clockwork.FakeClock, r *recorder) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := clk.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("the wheel did not re-arm its timer: %v", err)
	}
	var got []int
	for {
		select {
		case id := <-r.visits:
			got = append(got, id)
		default:
			slices.Sort(got)
			return got
		}
	}
}

func addMembers(t *testing.T, w *Wheel[*member], n int) []*member {
	t.Helper()
	ms := make([]*member, n)
	for i := range ms {
		ms[i] = &member{id: i}
		if !w.Add(ms[i], &ms[i].slot) {
			t.Fatalf("member %d not added", i)
		}
	}
	return ms
}

func TestWheelVisits(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		members  int
		steps    []time.Duration // clock advances
		want     [][]int         // visited members after each advance
	}{
		{
			name: "one bucket per tick", interval: 4 * BucketWidth, members: 10,
			steps: []time.Duration{BucketWidth, BucketWidth, BucketWidth, BucketWidth, BucketWidth},
			want:  [][]int{{0, 4, 8}, {1, 5, 9}, {2, 6}, {3, 7}, {0, 4, 8}},
		},
		{
			name: "half a tick visits nothing", interval: 4 * BucketWidth, members: 4,
			steps: []time.Duration{BucketWidth / 2, BucketWidth / 2},
			want:  [][]int{nil, {0}},
		},
		{
			name: "a late wake-up catches up", interval: 4 * BucketWidth, members: 6,
			steps: []time.Duration{3 * BucketWidth, BucketWidth},
			want:  [][]int{{0, 1, 2, 4, 5}, {3}},
		},
		{
			name: "more than a turn behind visits each member once", interval: 4 * BucketWidth, members: 6,
			steps: []time.Duration{11 * BucketWidth, BucketWidth},
			want:  [][]int{{0, 1, 2, 3, 4, 5}, {0, 4}},
		},
		{
			name: "a short interval has one bucket", interval: BucketWidth * 3 / 4, members: 3,
			steps: []time.Duration{BucketWidth * 3 / 4, BucketWidth * 3 / 4},
			want:  [][]int{{0, 1, 2}, {0, 1, 2}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clockwork.NewFakeClock()
			r := newRecorder()
			w := New(clk, tc.interval, r.visit)
			defer w.Stop()
			addMembers(t, w, tc.members)
			for i, d := range tc.steps {
				clk.Advance(d)
				if got := settle(t, clk, r); !slices.Equal(got, tc.want[i]) {
					t.Fatalf("after advance %d (%v): visited %v, want %v", i, d, got, tc.want[i])
				}
			}
		})
	}
}

func TestWheelBuckets(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		want     int
	}{
		{time.Nanosecond, 1}, {time.Millisecond, 1}, {BucketWidth, 1}, {time.Second, 40}, {25 * time.Second, 1000}, {time.Hour, MaxBuckets},
	} {
		t.Run(tc.interval.String(), func(t *testing.T) {
			w := New(clockwork.NewFakeClock(), tc.interval, func(time.Time, int) {})
			defer w.Stop()
			if len(w.buckets) != tc.want {
				t.Fatalf("%d buckets, want %d", len(w.buckets), tc.want)
			}
		})
	}
}

// TestWheelRemoveBeforeAdd is the race of a connection closed at once (over
// a connection limit): its Remove runs before its Add. The member must not
// stay on the wheel.
func TestWheelRemoveBeforeAdd(t *testing.T) {
	clk := clockwork.NewFakeClock()
	r := newRecorder()
	w := New(clk, time.Second, r.visit)
	defer w.Stop()
	m := &member{id: 1}
	w.Remove(m, &m.slot)
	if w.Add(m, &m.slot) {
		t.Fatal("Add after Remove reports the member added")
	}
	if n := w.Len(); n != 0 {
		t.Fatalf("%d members on the wheel, want 0", n)
	}
	clk.Advance(time.Second)
	if got := settle(t, clk, r); len(got) != 0 {
		t.Fatalf("visited %v", got)
	}
}

func TestWheelAddRemove(t *testing.T) {
	w := New(clockwork.NewFakeClock(), 3*time.Second, func(time.Time, *member) {})
	defer w.Stop()
	ms := addMembers(t, w, 5)
	if w.Add(ms[0], &ms[0].slot) {
		t.Fatal("a member was added twice")
	}
	if n := w.Len(); n != 5 {
		t.Fatalf("Len %d, want 5", n)
	}
	w.Remove(ms[1], &ms[1].slot)
	w.Remove(ms[1], &ms[1].slot) // twice is fine
	if n := w.Len(); n != 4 {
		t.Fatalf("Len %d after a removal, want 4", n)
	}
	if w.Add(ms[1], &ms[1].slot) {
		t.Fatal("a removed member was added again")
	}
	for _, m := range ms {
		w.Remove(m, &m.slot)
	}
	if n := w.Len(); n != 0 {
		t.Fatalf("Len %d after removing all, want 0", n)
	}
}

// TestWheelVisitRemoves: a visit may take its member off the wheel (the
// keepalive closes an idle connection, whose close removes it).
func TestWheelVisitRemoves(t *testing.T) {
	clk := clockwork.NewFakeClock()
	var w *Wheel[*member]
	visited := make(chan int, 16)
	w = New(clk, time.Second, func(_ time.Time, m *member) {
		w.Remove(m, &m.slot)
		visited <- m.id
	})
	defer w.Stop()
	addMembers(t, w, 3)
	clk.Advance(time.Second)
	for range 3 {
		<-visited
	}
	if err := clk.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if n := w.Len(); n != 0 {
		t.Fatalf("Len %d, want 0", n)
	}
}

func TestWheelStop(t *testing.T) {
	clk := clockwork.NewFakeClock()
	r := newRecorder()
	w := New(clk, time.Second, r.visit)
	addMembers(t, w, 2)
	w.Stop()
	w.Stop() // idempotent
	clk.Advance(time.Second)
	select {
	case id := <-r.visits:
		t.Fatalf("member %d visited after Stop", id)
	default:
	}
}

// TestWheelRealClock runs a wheel on the real clock until each member has
// been visited twice.
func TestWheelRealClock(t *testing.T) {
	r := newRecorder()
	w := New(nil, 20*time.Millisecond, r.visit)
	defer w.Stop()
	addMembers(t, w, 3)
	count := map[int]int{}
	for done := 0; done < 3; {
		id := <-r.visits
		count[id]++
		if count[id] == 2 {
			done++
		}
	}
}

func ExampleWheel() {
	type conn struct {
		name string
		slot Slot
	}
	clk := clockwork.NewFakeClock()
	pinged := make(chan string, 1)
	w := New(clk, time.Second, func(_ time.Time, c *conn) { pinged <- c.name })
	defer w.Stop()
	c := &conn{name: "a"}
	w.Add(c, &c.slot)
	clk.Advance(time.Second)
	fmt.Println("ping", <-pinged)
	// Output: ping a
}
