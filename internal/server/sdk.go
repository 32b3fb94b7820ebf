package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"

	"github.com/switchboardhq/switchboard/web"
)

// sdkHandler serves a file of the browser SDK (name, in web.SDK) at
// /sdk/<name>: switchboard.js, so that a page can import it with no
// bundler, and switchboard-worker.js, the SharedWorker the SDK starts
// beside it (a SharedWorker must come from the page's origin, so the
// worker is only used by pages on this server's origin unless the
// application serves a copy and passes workerUrl). The URL carries no version, so
// browsers must revalidate (no-cache) and get a 304 from the ETag while the
// binary is the same. It is public code: any origin may import it (a
// module script from another origin needs CORS), and it does not depend
// on the demo being on.
func sdkHandler(name string) (http.Handler, error) {
	body, err := web.SDK.ReadFile("sdk/" + name)
	if err != nil {
		return nil, fmt.Errorf("server: sdk bundle: %w", err)
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", etag)
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	}), nil
}
