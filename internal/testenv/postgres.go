package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresAdminDSN is the PostgreSQL server the tests use, unless the
// SWITCHBOARD_TEST_POSTGRES environment variable names another: a local
// server with trust authentication for the user postgres.
const PostgresAdminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Postgres creates a database with a random name on the test PostgreSQL
// server and returns its connection string; the database is dropped when
// the test ends. Unlike redis-server and nats-server, PostgreSQL is not
// started by the test: it must already run. When it does not answer, the
// test is skipped, or failed when the CI environment variable is set.
func Postgres(tb testing.TB) string {
	tb.Helper()
	admin := os.Getenv("SWITCHBOARD_TEST_POSTGRES")
	if admin == "" {
		admin = PostgresAdminDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("testenv: PostgreSQL is required in CI and does not answer at %s: %v", admin, err)
		}
		tb.Skipf("testenv: SKIPPED: this test needs PostgreSQL at %s (or SWITCHBOARD_TEST_POSTGRES), and it does not answer (%v); with CI set, this fails instead", admin, err)
	}
	defer conn.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	db := "switchboard_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		tb.Fatalf("testenv: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("testenv: drop database %s: %v", db, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+db+" WITH (FORCE)"); err != nil {
			tb.Errorf("testenv: drop database %s: %v", db, err)
		}
	})
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	cfg.Database = db
	return dbURL(cfg)
}

// dbURL returns the connection string of cfg's server and database.
func dbURL(cfg *pgx.ConnConfig) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(cfg.User, cfg.Password),
		Host:     net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
		Path:     "/" + cfg.Database,
		RawQuery: "sslmode=disable",
	}
	if cfg.Password == "" {
		u.User = url.User(cfg.User)
	}
	return u.String()
}
