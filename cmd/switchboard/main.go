// Command switchboard runs a Switchboard node: a realtime pub/sub server for
// web applications. Run "switchboard --help" for usage.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot(os.Stdout, os.Stderr, os.Environ()).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		os.Exit(1)
	}
}

// Version returns the build's version: the -ldflags value, else the module
// version, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newRoot(stdout, stderr io.Writer, environ []string) *cobra.Command {
	root := &cobra.Command{
		Use:   "switchboard",
		Short: "Switchboard: a realtime pub/sub server for web applications",
		Long: `Switchboard is a realtime pub/sub server for web applications.

Browsers connect over WebSocket at /ws and subscribe to channels; your backend
publishes to channels through the server API at /api/. A demo chat is served
at / by default.

Start a server on http://127.0.0.1:8000 with the in-memory broker:

  switchboard serve

Every setting can come from a flag, an environment variable
(SWITCHBOARD_<KEY>, for example SWITCHBOARD_ADDR=0.0.0.0:8000) or a YAML file
(--config switchboard.yaml); flags win over the environment, which wins over
the file. Run "switchboard serve --help" for the list.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(stdout, stderr, environ), newVersion(stdout))
	return root
}

func newVersion(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintln(stdout, "switchboard", Version())
			return err
		},
	}
}

func newServe(stdout, stderr io.Writer, environ []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server",
		Long: `Run a Switchboard node until SIGINT or SIGTERM, then shut down gracefully:
clients are closed with code 4000 ("server shutting down, reconnect").

With no configuration it listens on 127.0.0.1:8000, keeps channels in memory,
lets anonymous clients connect, and prints a generated server API key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(cmd.Flags(), environ)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, stdout, stderr)
		},
	}
	config.RegisterFlags(cmd.Flags())
	return cmd
}

func serve(ctx context.Context, cfg config.Config, stdout, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	srv, err := server.New(cfg, log, Version())
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	if srv.GeneratedKey {
		fmt.Fprintf(stdout, "Server API key (generated for this run; set SWITCHBOARD_API_KEY to keep one): %s\n", srv.APIKeys[0])
	}
	if cfg.AllowAnonymous {
		log.Warn("anonymous clients are allowed: anyone who reaches this server can connect, subscribe and (with client_publish) publish")
	}
	log.Info("switchboard listening", "addr", "http://"+srv.Addr(), "version", Version(), "broker", cfg.Broker, "demo", cfg.Demo)
	if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel)))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
