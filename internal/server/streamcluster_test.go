package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/switchboardhq/switchboard/internal/broker"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/testenv"
)

// minimalOffer is an SDP offer good enough to reach the stream lookup.
const minimalOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n"

// noRedirect is an HTTP client that returns redirects instead of
// following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// streamNodes starts two nodes on one broker with streams, WHEP and an
// RTMP ingest; with withURL each knows its public HTTP URL
// (node_http_url), else neither it nor node_url is set.
func streamNodes(t *testing.T, brokerURL string, withURL bool) (a, b *testServer) {
	t.Helper()
	nodes := make([]*testServer, 2)
	for i := range nodes {
		port := freeTCPPort(t)
		calls := withCalls(t)
		nodes[i] = start(t, func(c *config.Config) {
			calls(c)
			c.Addr = fmt.Sprintf("127.0.0.1:%d", port)
			if withURL {
				c.NodeHTTPURL = fmt.Sprintf("http://127.0.0.1:%d/", port)
			}
			c.Broker = brokerURL
			c.NodeName = fmt.Sprintf("node%d", i)
			c.RTMPAddr = "127.0.0.1:0"
			c.HandshakeTimeout = 3 * time.Second
			c.StreamKeySecret = "a-stream-key-secret-for-tests"
		})
	}
	return nodes[0], nodes[1]
}

// send makes a request with client and returns the status, the body and
// the Location header.
func send(t *testing.T, client *http.Client, method, u, ctype, body string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header.Get("Location")
}

// whepOffer returns a receive-only offer (video and audio) with its
// candidates, and the peer connection that made it.
func whepOffer(t *testing.T) (*webrtc.PeerConnection, string) {
	t.Helper()
	pc := newPC(t, pionAPI(t))
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pc, localSDP(t, pc, offer)
}

// TestStreamAcrossNodes publishes with ffmpeg over RTMP into node A, with
// a stream key minted on node B, and uses the stream from node B (on
// Redis and on NATS): WHEP and LL-HLS are redirected to A (307) and play
// when followed, B's GET /api/streams lists the stream with A's node, a
// second publisher on B is refused as on one node, a kick sent to B ends
// A's publisher, and once the publisher is gone B answers 404.
func TestStreamAcrossNodes(t *testing.T) {
	needFFmpeg(t)
	for _, be := range []backend{redisBackend(t), natsBackend(t)} {
		t.Run(be.name, func(t *testing.T) { streamAcrossNodes(t, be.url()) })
	}
}

func streamAcrossNodes(t *testing.T, brokerURL string) {
	a, b := streamNodes(t, brokerURL, true)
	aURL, bURL := "http://"+a.Addr(), "http://"+b.Addr()
	// A stream key minted on B works on A (one stream_key_secret).
	status, body := b.api("POST", "/api/streams/key", testKey, `{"path":"live/x","ttl":600}`)
	if status != 200 {
		t.Fatalf("mint key on B: %d %v", status, body)
	}
	key := body["result"].(map[string]any)["key"].(string)
	ffmpegPublish(t, "rtmp://"+a.RTMPAddr()+"/live/x?key="+url.QueryEscape(key), 120)
	info := a.waitStream("live/x")
	owner, _ := info["node"].(string)
	if owner == "" {
		t.Fatalf("A's stream has no node: %v", info)
	}

	t.Run("api streams on B lists A's stream", func(t *testing.T) {
		var in map[string]any
		waitFor(t, "live/x in B's /api/streams", func() bool { in = b.streamInfo("live/x"); return in != nil })
		if in["node"] != owner {
			t.Fatalf("node %v, want %s", in["node"], owner)
		}
		if !strings.Contains(fmt.Sprint(in["tracks"]), "h264") {
			t.Fatalf("tracks %v", in["tracks"])
		}
		_, body := b.api("GET", "/api/streams", testKey, "")
		if m := body["result"].(map[string]any)["missing_nodes"]; m != nil {
			t.Fatalf("missing_nodes %v", m)
		}
	})

	t.Run("hls on B is redirected to A", func(t *testing.T) {
		status, _, loc := send(t, noRedirect, "GET", bURL+"/hls/live/x/index.m3u8?key=k", "", "")
		if status != http.StatusTemporaryRedirect || loc != aURL+"/hls/live/x/index.m3u8?key=k" {
			t.Fatalf("GET on B: %d Location %q", status, loc)
		}
		media := mediaPlaylistURL(t, bURL+"/hls/live/x/")
		status, pl := httpGet(t, media)
		if status != 200 || !strings.Contains(pl, "#EXT-X-PART:") {
			t.Fatalf("media playlist through B: %d\n%s", status, pl)
		}
		// A part named in the playlist, read through B.
		part := rePart.FindStringSubmatch(pl)
		if part == nil {
			t.Fatalf("no part in\n%s", pl)
		}
		if status, body := httpGet(t, bURL+"/hls/live/x/"+part[1]); status != 200 || body == "" {
			t.Fatalf("part through B: %d, %d bytes", status, len(body))
		}
	})

	t.Run("whep on B is redirected to A and plays", func(t *testing.T) {
		_, offer := whepOffer(t)
		status, _, loc := send(t, noRedirect, "POST", bURL+"/whep/live/x", "application/sdp", offer)
		if status != http.StatusTemporaryRedirect || loc != aURL+"/whep/live/x" {
			t.Fatalf("WHEP on B: %d Location %q", status, loc)
		}
		pc, offer := whepOffer(t)
		got := make(chan string, 4)
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			if _, _, err := tr.ReadRTP(); err == nil {
				got <- tr.Codec().MimeType
			}
		})
		// Go's client, as fetch, follows a 307 with the method and body.
		status, answer, resource := send(t, http.DefaultClient, "POST", bURL+"/whep/live/x", "application/sdp", offer)
		if status != http.StatusCreated {
			t.Fatalf("WHEP through B: %d %s", status, answer)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatal(err)
		}
		select {
		case mime := <-got:
			if !strings.EqualFold(mime, webrtc.MimeTypeH264) {
				t.Fatalf("track %s, want H.264", mime)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no media through the redirected WHEP session")
		}
		// The session resource is A's: relative, resolved against A.
		if status, body, _ := send(t, http.DefaultClient, "DELETE", aURL+resource, "", ""); status != 200 {
			t.Fatalf("DELETE %s on A: %d %s", resource, status, body)
		}
	})

	t.Run("second publisher on B is refused", func(t *testing.T) {
		cmd := ffmpegPublish(t, "rtmp://"+b.RTMPAddr()+"/live/x?key="+url.QueryEscape(testKey), 5)
		if err := cmd.Wait(); err == nil {
			t.Fatal("a second publisher on B took the path")
		}
		if in := a.streamInfo("live/x"); in == nil || in["started"] != info["started"] {
			t.Fatalf("A's publisher disturbed: %v", in)
		}
	})

	t.Run("bad input on B", func(t *testing.T) {
		for name, c := range map[string]struct {
			method, path, ctype string
			want                int
		}{
			"unknown stream hls":   {"GET", "/hls/live/nope/index.m3u8", "", 404},
			"unknown stream whep":  {"POST", "/whep/live/nope", "application/sdp", 404},
			"unknown namespace":    {"GET", "/hls/other/x/index.m3u8", "", 404},
			"whep OPTIONS is here": {"OPTIONS", "/whep/live/x", "", 204},
			"whip of a live path":  {"POST", "/whip/live/x?key=" + testKey, "application/sdp", 409},
		} {
			if status, body, _ := send(t, noRedirect, c.method, bURL+c.path, c.ctype, minimalOffer); status != c.want {
				t.Errorf("%s: %d %s, want %d", name, status, body, c.want)
			}
		}
		if status, body := b.api("POST", "/api/streams/kick", testKey, `{"path":"live/nope"}`); status != 404 {
			t.Errorf("kick of nothing: %d %v", status, body)
		}
		if status, body := b.api("POST", "/api/streams/kick", testKey, `{"path":"bad path"}`); status != 400 {
			t.Errorf("kick of a bad path: %d %v", status, body)
		}
	})

	t.Run("kick on B ends A's publisher", func(t *testing.T) {
		if status, body := b.api("POST", "/api/streams/kick", testKey, `{"path":"live/x"}`); status != 200 {
			t.Fatalf("kick: %d %v", status, body)
		}
		waitFor(t, "A's stream to end", func() bool { return a.streamInfo("live/x") == nil })
		waitFor(t, "B to answer 404", func() bool {
			status, _, _ := send(t, noRedirect, "GET", bURL+"/hls/live/x/index.m3u8", "", "")
			return status == http.StatusNotFound
		})
	})

	t.Run("when A's publisher leaves B answers 404", func(t *testing.T) {
		cmd := ffmpegPublish(t, "rtmp://"+a.RTMPAddr()+"/live/x?key="+url.QueryEscape(testKey), 3)
		waitFor(t, "the new stream on B", func() bool { return b.streamInfo("live/x") != nil })
		_ = cmd.Wait()
		waitFor(t, "B to answer 404", func() bool {
			status, _, _ := send(t, noRedirect, "POST", bURL+"/whep/live/x", "application/sdp", minimalOffer)
			return status == http.StatusNotFound
		})
		if in := b.streamInfo("live/x"); in != nil {
			t.Fatalf("still listed: %v", in)
		}
	})
}

// TestStreamOwnerWithoutURL: viewers of a stream whose node has neither
// node_http_url nor node_url get 503 on another node, with a message
// naming the node; the stream still plays on its own node.
func TestStreamOwnerWithoutURL(t *testing.T) {
	needFFmpeg(t)
	a, b := streamNodes(t, redisBackend(t).url(), false)
	ffmpegPublish(t, "rtmp://"+a.RTMPAddr()+"/live/x?key="+url.QueryEscape(testKey), 60)
	owner := a.waitStream("live/x")["node"].(string)
	var status int
	var body string
	waitFor(t, "B to know the owner", func() bool {
		status, body, _ = send(t, noRedirect, "GET", "http://"+b.Addr()+"/hls/live/x/index.m3u8", "", "")
		return status != http.StatusNotFound
	})
	if status != http.StatusServiceUnavailable || !strings.Contains(body, owner) || !strings.Contains(body, "node_http_url") {
		t.Fatalf("GET on B: %d %s", status, body)
	}
	if status, body, _ := send(t, noRedirect, "POST", "http://"+b.Addr()+"/whep/live/x", "application/sdp", minimalOffer); status != http.StatusServiceUnavailable {
		t.Fatalf("WHEP on B: %d %s", status, body)
	}
	mediaPlaylistURL(t, "http://"+a.Addr()+"/hls/live/x/")
}

// TestStreamAPISilentNode: a node the cluster takes for live that does
// not answer (a "ghost", announced and recorded as a stream's owner
// straight through Redis, as a node that froze would leave them) is named
// in GET /api/streams' missing_nodes, and a kick of its stream is a 503
// naming it after 2 s; its stream's viewers are still sent to it, and a
// WHIP offer for its path is refused with 409.
func TestStreamAPISilentNode(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	nodes := cluster(t, r.URL(), 1, withCalls(t))
	// The owner record as internal/server and internal/hub write it, and the announcement.
	startGhost(t, r.URL(), nodes[0], "$stream:live/frozen", broker.ClientInfo{Client: "ghost", User: "http://ghost.example", Transport: "stream"})

	status, body := nodes[0].api("GET", "/api/streams", testKey, "")
	result, _ := body["result"].(map[string]any)
	if missing := anySlice(result["missing_nodes"]); status != 200 || len(missing) != 1 || missing[0] != "ghost" {
		t.Fatalf("GET /api/streams: %d %v, want missing_nodes [ghost]", status, body)
	}
	status, res := nodes[0].api("POST", "/api/streams/kick", testKey, `{"path":"live/frozen"}`)
	e, _ := res["error"].(map[string]any)
	if msg, _ := e["message"].(string); status != 503 || !strings.Contains(msg, "ghost") {
		t.Fatalf("kick of the ghost's stream: %d %v, want 503 naming the ghost", status, res)
	}
	base := "http://" + nodes[0].Addr()
	if status, _, loc := send(t, noRedirect, "GET", base+"/hls/live/frozen/index.m3u8", "", ""); status != 307 || loc != "http://ghost.example/hls/live/frozen/index.m3u8" {
		t.Fatalf("HLS of the ghost's stream: %d %q", status, loc)
	}
	if status, body, _ := send(t, noRedirect, "POST", base+"/whip/live/frozen?key="+testKey, "application/sdp", minimalOffer); status != 409 || !strings.Contains(body, "ghost") {
		t.Fatalf("WHIP of the ghost's path: %d %s", status, body)
	}
}
