package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/wstest"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot(&out, &out, nil)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestVersionAndHelp(t *testing.T) {
	out0, err := run(t, "version")
	if err != nil || !strings.HasPrefix(out0, "switchboard ") {
		t.Fatalf("version: %q %v", out0, err)
	}
	out, err := run(t, "--help")
	if err != nil || !strings.Contains(out, "switchboard serve") || !strings.Contains(out, "SWITCHBOARD_") {
		t.Fatalf("help: %q %v", out, err)
	}
	out, err = run(t, "serve", "--help")
	for _, want := range []string{"--addr", "SWITCHBOARD_ADDR", "--api-key", "--config"} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("serve help lacks %q: %v\n%s", want, err, out)
		}
	}
	flag, err := run(t, "--version")
	if err != nil || flag != out0 {
		t.Fatalf("--version: %q %v, want %q as the version command prints", flag, err, out0)
	}
	out, err = run(t, "token", "--help")
	for _, want := range []string{"--jwt-secret", "SWITCHBOARD_JWT_SECRET", "--jwt-issuer", "--jwt-audience", "--sub", "--config"} {
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("token help lacks %q: %v\n%s", want, err, out)
		}
	}
	for _, unwanted := range []string{"--addr", "--broker", "--allowed-origins", "--history-size"} {
		if strings.Contains(out, unwanted) {
			t.Fatalf("token help lists serve's %s:\n%s", unwanted, out)
		}
	}
	if _, err := run(t, "serve", "--broker", "nope"); err == nil || !strings.Contains(err.Error(), "broker") {
		t.Fatalf("bad config accepted: %v", err)
	}
	if _, err := run(t, "frobnicate"); err == nil {
		t.Fatal("unknown command accepted")
	}
}

// TestToken: a token minted with only the token command's flags carries
// the configured issuer, and the rest of the configuration still comes
// from the environment and the defaults.
func TestToken(t *testing.T) {
	var out bytes.Buffer
	root := newRoot(&out, &out, []string{"SWITCHBOARD_JWT_ISSUER=https://app.example"})
	root.SetArgs([]string{"token", "--jwt-secret", "0123456789abcdef0123", "--sub", "alice"})
	if err := root.Execute(); err != nil {
		t.Fatalf("token: %v\n%s", err, out.String())
	}
	parts := strings.Split(strings.TrimSpace(out.String()), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", out.String())
	}
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || !strings.Contains(string(claims), `"sub":"alice"`) || !strings.Contains(string(claims), `"iss":"https://app.example"`) {
		t.Fatalf("claims %s, %v", claims, err)
	}
	if _, err := run(t, "token", "--sub", "alice"); err == nil || !strings.Contains(err.Error(), "jwt_secret") {
		t.Fatalf("no secret: %v", err)
	}
}

func TestVersionFrom(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "2543fab0123456789abcdef0123456789abcdef0"
	tests := map[string]struct {
		bi   debug.BuildInfo
		want string
	}{
		"go install @version": {debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: vcs(rev, "false")}, "v1.2.3"},
		"pseudo-version":      {debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261204210100-2543fab01234+dirty"}}, "v0.0.0-20261204210100-2543fab01234+dirty"},
		"revision":            {debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "dev+2543fab01234"},
		"modified":            {debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "dev+2543fab01234.dirty"},
		"nothing":             {debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
	}
	for name, tc := range tests {
		if got := versionFrom(&tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}

// TestServeProcess runs the real binary: it prints a generated API key,
// serves the demo and the API, and on SIGTERM closes clients with 4000 and
// exits 0.
func TestServeProcess(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "switchboard")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "SWITCHBOARD_API_KEY=", "SWITCHBOARD_LOG_FORMAT=json")
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	keyLine := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			keyLine <- sc.Text()
		}
	}()
	addrRe := regexp.MustCompile(`"addr":"http://([^"]+)"`)
	addr := make(chan string, 1)
	var logs bytes.Buffer
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var host string
	select {
	case host = <-addr:
	case <-time.After(20 * time.Second):
		t.Fatal("server did not log its address")
	}
	var key string
	select {
	case line := <-keyLine:
		key = line[strings.LastIndex(line, " ")+1:]
	case <-time.After(5 * time.Second):
		t.Fatal("no generated API key printed")
	}

	resp, err := http.Get("http://" + host + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("WebSocket")) && !bytes.Contains(page, []byte("<script")) {
		t.Fatalf("demo page: %d %.200s", resp.StatusCode, page)
	}
	req, _ := http.NewRequest("GET", "http://"+host+"/api/info", nil)
	req.Header.Set("Authorization", "apikey "+key)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("API with the generated key: %v %v", resp, err)
	}
	resp.Body.Close()

	c := wstest.Dial(t, "ws://"+host+"/ws")
	c.Subscribe("x")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.ExpectClose(); code != 4000 {
		t.Fatalf("close code on SIGTERM: %d", code)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	<-logsDone
	if !strings.Contains(logs.String(), "anonymous clients are allowed") {
		t.Fatalf("no anonymous warning in logs:\n%s", logs.String())
	}
}
