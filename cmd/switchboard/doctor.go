package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchboardhq/switchboard/internal/selftest"
)

func newDoctor(stdout io.Writer, environ []string) *cobra.Command {
	doctor := &cobra.Command{
		Use:   "doctor",
		Short: "Check that a running server works from this machine",
	}
	doctor.AddCommand(newDoctorWebRTC(stdout, environ))
	return doctor
}

func newDoctorWebRTC(stdout io.Writer, environ []string) *cobra.Command {
	var (
		base, token, apiKey string
		timeout             time.Duration
		asJSON, loopback    bool
	)
	cmd := &cobra.Command{
		Use:   "webrtc",
		Short: "Check calls: two peers through the server's SFU, direct and relay-only",
		Long: `Run two WebRTC peers (pion) through a running server, from this machine, the
way browsers call: both join a room over the server's WebSocket, one
publishes an audio track, the other must receive it through the SFU, once
over direct candidates and once relay-only through the TURN server of the
join reply; the TURN credentials are tried on their own, and the addresses
the SFU announces are judged. It says in plain words what works and what is
broken (a blocked UDP port, refused TURN credentials, no public address).

With --api-key (or SWITCHBOARD_API_KEY) it first asks the server to run the
same test itself (GET /api/webrtc/selftest), from its own host.

  switchboard doctor webrtc --url https://rt.example.com
  switchboard doctor webrtc --url http://127.0.0.1:8000 --api-key KEY

It exits with status 1 when a check failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if apiKey == "" {
				apiKey = envValue(environ, "SWITCHBOARD_API_KEY")
			}
			if !cmd.Flags().Changed("loopback") {
				loopback = isLoopbackURL(base)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			ok := true
			if apiKey != "" {
				r, err := serverSelfTest(ctx, base, apiKey, 4*timeout)
				if err != nil {
					return err
				}
				ok = ok && r.OK
				if err := printReport(stdout, "from the server's host", r, asJSON); err != nil {
					return err
				}
			}
			dial, err := selftest.WebSocketDialer(base, token)
			if err != nil {
				return err
			}
			r := selftest.Run(ctx, selftest.Config{Dial: dial, Loopback: loopback, Timeout: timeout})
			ok = ok && r.OK
			if err := printReport(stdout, "from this machine", r, asJSON); err != nil {
				return err
			}
			if !ok {
				return errors.New("doctor webrtc: calls are broken")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&base, "url", "http://127.0.0.1:8000", "the server's URL, as browsers reach it")
	f.StringVar(&token, "token", "", "connection token, for a server that does not let anonymous clients call")
	f.StringVar(&apiKey, "api-key", "", "server API key: also run the test on the server (default SWITCHBOARD_API_KEY)")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "bound of each call attempt")
	f.BoolVar(&asJSON, "json", false, "print the reports as JSON")
	f.BoolVar(&loopback, "loopback", false, "use loopback candidates (default: when --url is a loopback address)")
	return cmd
}

func printReport(w io.Writer, where string, r selftest.Report, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(map[string]any{"where": where, "report": r})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	_, err := fmt.Fprintf(w, "Calls, %s:\n%s\n", where, r)
	return err
}

// serverSelfTest asks the server to run the self-test itself.
func serverSelfTest(ctx context.Context, base, apiKey string, timeout time.Duration) (selftest.Report, error) {
	var r selftest.Report
	u, err := url.Parse(base)
	if err != nil {
		return r, fmt.Errorf("doctor webrtc: --url: %w", err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/ws"), "/") + "/api/webrtc/selftest"
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return r, err
	}
	req.Header.Set("Authorization", "apikey "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, fmt.Errorf("doctor webrtc: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		Result *selftest.Report `json:"result"`
		Error  *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return r, fmt.Errorf("doctor webrtc: %s answered %s without a report", u, resp.Status)
	}
	if body.Error != nil {
		return r, fmt.Errorf("doctor webrtc: %s: %s", u, body.Error.Message)
	}
	if body.Result == nil {
		return r, fmt.Errorf("doctor webrtc: %s answered %s without a report", u, resp.Status)
	}
	return *body.Result, nil
}

func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func envValue(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}
