// Package postgres is the outbox consumer: it publishes the rows an
// application inserts into a PostgreSQL table, in its own transactions,
// and deletes each row in the transaction that read it.
//
// Rows are split into partitions by a hash of their channel. A batch reads
// the oldest rows of one partition with SELECT ... FOR UPDATE while its
// transaction holds an advisory lock on that partition
// (pg_try_advisory_xact_lock), publishes them in id order, deletes them
// and commits, which releases the lock. Any number of nodes may consume
// the same table: a partition is read by one transaction at a time, so
// each channel's rows are published in id order, and the table's trigger
// (Schema) makes id order the commit order within a channel. A node that
// dies mid-batch loses its transaction and its lock with its connection;
// the next batch publishes the same rows again with the same idempotency
// keys, which the broker turns into no-ops.
//
// LISTEN/NOTIFY wakes the consumer as soon as a row is committed; a poll
// every PollInterval catches what a lost notification missed.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboardhq/switchboard/internal/consumer"
	"github.com/switchboardhq/switchboard/internal/metrics"
)

// name is the consumer's name in metrics and in the hub's source label.
const name = "postgres"

// Options configure a Consumer. DSN and Publish are required.
type Options struct {
	// DSN is the PostgreSQL connection string (URL or key=value form).
	DSN string
	// Table is the outbox table (see CheckTable). Default
	// "switchboard_outbox".
	Table string
	// PollInterval is how often the table is read when no notification
	// came. Default 1s.
	PollInterval time.Duration
	// BatchSize is how many rows one transaction reads at most. Default 100.
	BatchSize int
	// Partitions is how many partitions the channels are hashed into: up
	// to this many batches run at once across all nodes. Every node
	// consuming the table must use the same number, or two of them could
	// read one channel at once. Default 16.
	Partitions int
	// Workers is how many batches this node runs at once (connections to
	// the database, plus one for LISTEN). Default min(4, Partitions).
	Workers int
	// Publish publishes one row.
	Publish consumer.PublishFunc
	// Logger receives the consumer's logs. Default slog.Default().
	Logger *slog.Logger
	// Metrics counts rows. Required.
	Metrics *metrics.Metrics
}

// Consumer reads an outbox table. Create it with New and run it with Run.
type Consumer struct {
	opts Options
	cfg  *pgxpool.Config
	log  *slog.Logger
	// The statements, with the table's name in them. The partition locks'
	// first key is a hash of the table's name (hashtext), the second the
	// partition.
	selectSQL, deleteSQL, lockSQL, lagSQL string
	// kicks has one channel per worker, each with room for one wake-up.
	kicks []chan struct{}
}

// New checks opts and returns a consumer; it does not connect yet.
func New(opts Options) (*Consumer, error) {
	if opts.Table == "" {
		opts.Table = "switchboard_outbox"
	}
	if err := CheckTable(opts.Table); err != nil {
		return nil, err
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	if opts.Partitions <= 0 {
		opts.Partitions = 16
	}
	if opts.Workers <= 0 {
		opts.Workers = min(4, opts.Partitions)
	}
	opts.Workers = min(opts.Workers, opts.Partitions)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Publish == nil || opts.Metrics == nil {
		return nil, errors.New("postgres consumer: Publish and Metrics are required")
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres consumer: dsn: %w", err)
	}
	cfg.MaxConns = int32(opts.Workers) + 1
	// A node that vanishes mid-batch without closing its connection
	// (power loss, a partition) would hold its partition's lock until
	// the server notices the dead connection; PostgreSQL ends such an
	// idle transaction after this time instead. A healthy batch is never
	// idle that long: each publish is bounded by the caller's timeout.
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.Itoa(int(idleInTransaction / time.Millisecond))
	}
	t := opts.Table
	c := &Consumer{
		opts: opts,
		cfg:  cfg,
		log:  opts.Logger.With("component", "consumer", "consumer", name, "table", t),
		// The primary key's order, filtered by partition: a batch visits
		// about BatchSize*Partitions index entries, not the table.
		selectSQL: `SELECT id, coalesce(channel, ''), coalesce(data::text, ''), coalesce(idempotency_key, '') FROM ` + t +
			` WHERE abs(hashtext(coalesce(channel, '')) % $1) = $2 ORDER BY id LIMIT $3 FOR UPDATE`,
		deleteSQL: `DELETE FROM ` + t + ` WHERE id = ANY($1)`,
		lockSQL:   `SELECT pg_try_advisory_xact_lock(hashtext('` + t + `:consumer'), $1)`,
		lagSQL:    `SELECT coalesce(extract(epoch FROM now() - (SELECT created_at FROM ` + t + ` ORDER BY id LIMIT 1)), 0)::float8`,
	}
	for range opts.Workers {
		c.kicks = append(c.kicks, make(chan struct{}, 1))
	}
	return c, nil
}

// Run consumes the table until ctx is done, then returns nil. It keeps
// going through database outages: each failure is logged, counted and
// retried after a pause. A batch cut short by ctx still deletes the rows
// it published; one cut short by a lost connection is rolled back, and
// its rows are published again, as duplicates, by the next batch.
func (c *Consumer) Run(ctx context.Context) error {
	pool, err := pgxpool.NewWithConfig(ctx, c.cfg)
	if err != nil {
		return fmt.Errorf("postgres consumer: %w", err)
	}
	defer pool.Close()
	var wg sync.WaitGroup
	wg.Go(func() { c.listen(ctx) })
	wg.Go(func() { c.watchLag(ctx, pool) })
	for w := range c.opts.Workers {
		wg.Go(func() { c.work(ctx, pool, w) })
	}
	wg.Wait()
	return nil
}

// kick wakes every worker.
func (c *Consumer) kick() {
	for _, k := range c.kicks {
		select {
		case k <- struct{}{}:
		default:
		}
	}
}

// listen holds a connection that LISTENs on the table's notification
// channel and wakes the workers on each notification, reconnecting after
// a pause when the connection fails.
func (c *Consumer) listen(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := c.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("listen failed; polling meanwhile", "err", err)
		c.opts.Metrics.ConsumerErrors.WithLabelValues(name).Inc()
		consumer.Sleep(ctx, consumer.Backoff(attempt))
	}
}

func (c *Consumer) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, c.cfg.ConnConfig)
	if err != nil {
		return fmt.Errorf("postgres consumer: connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{c.opts.Table}.Sanitize()); err != nil {
		return fmt.Errorf("postgres consumer: listen: %w", err)
	}
	// Rows may have come while no one listened.
	c.kick()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("postgres consumer: wait for notification: %w", err)
		}
		c.kick()
	}
}

// watchLag sets the lag gauge every PollInterval.
func (c *Consumer) watchLag(ctx context.Context, pool *pgxpool.Pool) {
	t := time.NewTicker(c.opts.PollInterval)
	defer t.Stop()
	for {
		var lag float64
		if err := pool.QueryRow(ctx, c.lagSQL).Scan(&lag); err == nil {
			c.opts.Metrics.ConsumerLagSeconds.WithLabelValues(name).Set(lag)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// work runs batches of worker w's partitions (p % Workers == w) until ctx
// is done: again at once while a batch comes back full, else after a
// notification or PollInterval.
func (c *Consumer) work(ctx context.Context, pool *pgxpool.Pool, w int) {
	t := time.NewTimer(c.opts.PollInterval)
	defer t.Stop()
	failures := 0
	for ctx.Err() == nil {
		more, failed := false, false
		for p := w; p < c.opts.Partitions && ctx.Err() == nil; p += c.opts.Workers {
			n, err := c.batch(ctx, pool, p)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// The other partitions go on (one channel's failure
				// must not hold them), but a database that is down
				// fails them all: one log line per round.
				if !failed {
					c.log.Warn("batch failed; retrying", "partition", p, "err", err)
				}
				failed = true
				c.opts.Metrics.ConsumerErrors.WithLabelValues(name).Inc()
				continue
			}
			more = more || n == c.opts.BatchSize
		}
		if failed {
			consumer.Sleep(ctx, consumer.Backoff(failures))
			failures++
			continue
		}
		failures = 0
		if more {
			continue
		}
		t.Reset(c.opts.PollInterval)
		select {
		case <-ctx.Done():
		case <-c.kicks[w]:
		case <-t.C:
		}
	}
}

// row is one outbox row.
type row struct {
	id           int64
	channel, key string
	data         []byte
}

// batch publishes and deletes the oldest rows of partition p in one
// transaction, when no other transaction holds the partition. It returns
// how many rows it read. A failure to publish ends the batch early: the
// rows before it are deleted and the rest stay, in order, for the next.
func (c *Consumer) batch(ctx context.Context, pool *pgxpool.Pool, p int) (int, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres consumer: begin: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	var locked bool
	if err := tx.QueryRow(ctx, c.lockSQL, p).Scan(&locked); err != nil {
		return 0, fmt.Errorf("postgres consumer: lock partition %d: %w", p, err)
	}
	if !locked {
		return 0, nil // another transaction, maybe another node, has it
	}
	rows, err := tx.Query(ctx, c.selectSQL, c.opts.Partitions, p, c.opts.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("postgres consumer: read partition %d: %w", p, err)
	}
	var batch []row
	for rows.Next() {
		var r row
		var data string
		if err := rows.Scan(&r.id, &r.channel, &data, &r.key); err != nil {
			rows.Close()
			return 0, fmt.Errorf("postgres consumer: read partition %d: %w", p, err)
		}
		r.data = []byte(data)
		batch = append(batch, r)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("postgres consumer: read partition %d: %w", p, err)
	}
	done := make([]int64, 0, len(batch))
	var pubErr error
	for _, r := range batch {
		if pubErr = c.publish(ctx, r); pubErr != nil {
			break
		}
		done = append(done, r.id)
	}
	if len(done) > 0 {
		// On through a shutdown (ctx done mid-batch), briefly: what was
		// published is deleted, not published again by the next batch.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		defer cancel()
		if _, err := tx.Exec(fctx, c.deleteSQL, done); err != nil {
			return 0, fmt.Errorf("postgres consumer: delete from partition %d: %w", p, err)
		}
		if err := tx.Commit(fctx); err != nil {
			return 0, fmt.Errorf("postgres consumer: commit partition %d: %w", p, err)
		}
	}
	return len(batch), pubErr
}

// idleInTransaction is the consumer connections'
// idle_in_transaction_session_timeout, unless the DSN sets one.
const idleInTransaction = time.Minute

// finishTimeout bounds what runs after ctx is done: the last commit, a
// rollback, closing the listening connection.
const finishTimeout = 5 * time.Second

// publish publishes one row with its idempotency key, or one derived from
// its table and id. An invalid row is logged, counted and done with.
func (c *Consumer) publish(ctx context.Context, r row) error {
	key := r.key
	if key == "" {
		key = consumer.DerivedKey("outbox:"+c.opts.Table, strconv.FormatInt(r.id, 10))
	}
	res, err := consumer.Publish(ctx, c.opts.Publish, r.channel, r.data, key)
	if res == "" {
		return err
	}
	if res == consumer.Invalid {
		c.log.Warn("skipped an invalid row", "id", r.id, "channel", r.channel, "err", err)
	}
	c.opts.Metrics.ConsumerRecords.WithLabelValues(name, string(res)).Inc()
	return nil
}
