// Command switchboard runs a Switchboard node: a realtime pub/sub server for
// web applications. Run "switchboard --help" for usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/switchboardhq/switchboard/internal/auth"
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
// version (go install ...@v1.2.3, or the pseudo-version go build derives
// from the repository), else "dev" with the VCS revision the build was made
// from ("dev+1a2b3c4d5e6f", "+dirty" with uncommitted changes), else "dev".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return versionFrom(bi)
}

// versionFrom is Version for the given build information.
func versionFrom(bi *debug.BuildInfo) string {
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	v := "dev+" + rev[:min(len(rev), 12)]
	if dirty {
		v += ".dirty"
	}
	return v
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
		// --version, which prints what the version command prints.
		Version: Version(),
	}
	root.SetVersionTemplate("switchboard {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(stdout, stderr, environ), newVersion(stdout), newToken(stdout, environ), newDoctor(stdout, environ))
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

func newToken(stdout io.Writer, environ []string) *cobra.Command {
	var sub, info, channel string
	var ttl time.Duration
	var channels []string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a connection or subscription token (HS256) for development",
		Long: `Mint a JWT signed with the configured jwt_secret (flag, SWITCHBOARD_JWT_SECRET
or the config file), for development and for trying the docs' examples; its
iss and aud are the configured jwt_issuer and jwt_audience, so that the
server accepts it. Production tokens are minted by your application's
backend.

  switchboard token --sub alice --ttl 1h
  switchboard token --sub alice --channels news,chat --info '{"name":"Alice"}'
  switchboard token --sub alice --channel private:room     # subscription token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(cmd.Flags(), environ)
			if err != nil {
				return err
			}
			if cfg.JWTSecret == "" {
				return errors.New("token: no jwt_secret configured (set SWITCHBOARD_JWT_SECRET or --jwt-secret)")
			}
			if info != "" && !json.Valid([]byte(info)) {
				return errors.New("token: --info must be a JSON value")
			}
			now := time.Now()
			reg := jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(now), Issuer: cfg.JWTIssuer}
			if cfg.JWTAudience != "" {
				reg.Audience = jwt.ClaimStrings{cfg.JWTAudience}
			}
			if ttl > 0 {
				reg.ExpiresAt = jwt.NewNumericDate(now.Add(ttl))
			}
			var claims jwt.Claims
			if channel != "" {
				claims = auth.SubscribeClaims{RegisteredClaims: reg, Channel: channel, Info: rawOrNil(info)}
			} else {
				claims = auth.ConnectClaims{RegisteredClaims: reg, Channels: channels, Info: rawOrNil(info)}
			}
			tok, err := auth.Sign(cfg.JWTSecret, claims)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, tok)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&sub, "sub", "", "user id (the sub claim); empty for an anonymous token")
	f.DurationVar(&ttl, "ttl", time.Hour, "lifetime (0: never expires)")
	f.StringVar(&info, "info", "", "JSON attached to the client (info claim)")
	f.StringSliceVar(&channels, "channels", nil, "channels the server subscribes at connect (connection token)")
	f.StringVar(&channel, "channel", "", "make a subscription token for this channel")
	// Only the settings a token depends on; the others, which the server
	// uses, would bury these in the help.
	config.RegisterFlagsFor(f, "jwt_secret", "jwt_issuer", "jwt_audience")
	return cmd
}

func rawOrNil(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

func newServe(stdout, stderr io.Writer, environ []string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the server",
		Long: `Run a Switchboard node until SIGINT or SIGTERM, then shut down gracefully:
clients are closed with code 4000 ("server shutting down, reconnect").

With no configuration it listens on 127.0.0.1:8000, keeps channels in memory,
lets anonymous clients connect, and prints a generated server API key. It
answers requests for localhost and IP addresses only: list the host names
clients use to reach it in --allowed-hosts, and the origins of pages served
elsewhere in --allowed-origins.`,
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
	log.Info("switchboard listening", "addr", srv.URL(), "version", Version(), "broker", cfg.Broker, "demo", cfg.Demo)
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
