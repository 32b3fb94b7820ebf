// Package internal_test checks rules that span packages: the direction of
// dependencies and the presence of documentation.
package internal_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/switchboardhq/switchboard"

// forbidden maps a package to the module packages it must not import, even
// indirectly, with the reason.
var forbidden = []struct {
	pkg, dep, why string
	direct        bool // only the package's own imports count
}{
	{"internal/protocol", module + "/", "the wire format imports only the standard library", false},
	{"internal/broker", module + "/", "the broker contract imports only the standard library", false},
	{"internal/hub", module + "/internal/transport", "the engine knows nothing of transports", false},
	{"internal/hub", "net/http", "the engine knows nothing of HTTP", true},
	{"internal/hub", module + "/internal/broker/memory", "the engine never picks a concrete broker", false},
	{"internal/hub", module + "/internal/api", "the API depends on the engine, not the reverse", false},
	{"internal/api", module + "/internal/transport", "the API does not reach into transports", false},
	{"internal/transport/websocket", module + "/internal/api", "transports do not depend on the API", false},
	{"internal/transport/longpoll", module + "/internal/api", "transports do not depend on the API", false},
	{"internal/transport/longpoll", module + "/internal/transport/", "transports never import each other", false},
	{"internal/transport/httppublish", module + "/internal/api", "transports do not depend on the API", false},
	{"internal/transport/sse", module + "/internal/api", "transports do not depend on the API", false},
	{"internal/transport/sse", module + "/internal/transport/", "transports never import each other", false},
	{"internal/transport/httppublish", module + "/internal/transport/", "the publish endpoint serves every transport and imports none", false},
	{"internal/transport/httpread", module + "/internal/api", "transports do not depend on the API", false},
	{"internal/transport/httpread", module + "/internal/transport/", "the read endpoints serve every transport and import none", false},
	{"internal/broker/memory", module + "/internal/hub", "brokers do not know the engine", false},
	{"internal/httpauth", module + "/internal/transport/", "shared by HTTP transports, it imports none of them", false},
	{"internal/httpx", module + "/internal/transport/", "the HTTP transports' shared preamble imports none of them", false},
	{"internal/fossil", module + "/", "the delta format is a leaf: standard library only", false},
	{"internal/wheel", module + "/", "the bucket wheel is a leaf: standard library and clockwork only", false},
	{"internal/realip", module + "/", "the client address behind proxies is shared by the server and the configuration: standard library only", false},
	{"internal/broker/redis", module + "/internal/hub", "brokers do not know the engine", false},
	{"internal/broker/nats", module + "/internal/hub", "brokers do not know the engine", false},
	{"internal/broker/redis", module + "/internal/transport", "brokers do not know transports", false},
	{"internal/broker/nats", module + "/internal/transport", "brokers do not know transports", false},
	{"internal/hub", module + "/internal/webhook", "the engine reports lifecycle events through its Lifecycle interface", false},
	{"internal/webhook", module + "/internal/hub", "webhooks implement the engine's Lifecycle without importing it", false},
	{"internal/broker/redis", module + "/internal/webhook", "brokers keep the webhook queue with broker types only", false},
	{"internal/broker/nats", module + "/internal/webhook", "brokers keep the webhook queue with broker types only", false},
	{"internal/broker/memory", module + "/internal/webhook", "brokers keep the webhook queue with broker types only", false},
	{"internal/hub", module + "/internal/broker/redis", "the engine never picks a concrete broker", false},
	{"internal/hub", module + "/internal/broker/nats", "the engine never picks a concrete broker", false},
	{"internal/turn", module + "/internal/hub", "TURN knows nothing of the engine: the signaling code calls it for credentials", false},
	{"internal/turn", module + "/internal/transport", "TURN knows nothing of the transports", false},
	{"internal/turn", module + "/internal/config", "TURN takes its own Config; the server maps the keys onto it", false},
	{"internal/hub", module + "/internal/webrtc", "the engine knows nothing of WebRTC: it declares Rooms, which the signaling service implements", false},
	{"internal/hub", "github.com/pion/", "the engine links no WebRTC library", false},
	{"internal/api", "github.com/pion/", "the API reaches calls through its Rooms interface", false},
	{"internal/webrtc/sfu", module + "/internal/hub", "the SFU knows nothing of the engine: it talks through its Signaler", false},
	{"internal/webrtc/sfu", module + "/internal/protocol", "the SFU's errors are its own; the signaling service maps them to codes", false},
	{"internal/webrtc/payload", module + "/", "the RTP payload parsers import only the standard library", false},
	{"internal/selftest", module + "/", "the calls' self-test is a client of the node: it reaches it through its signaling only", false},
	{"client", module + "/internal/", "the public Go SDK links no server code: applications import it alone", false},
	{"internal/proxy", module + "/internal/hub", "the backend client knows nothing of the engine: the hub declares the interface it calls", false},
	{"internal/proxy", module + "/internal/transport", "the backend client knows nothing of transports", false},
	{"internal/stream", module + "/internal/hub", "live streams know nothing of the engine: the server wires chat beside them", false},
	{"internal/stream", module + "/internal/transport", "live streams know nothing of the pub/sub transports", false},
	{"internal/stream", module + "/internal/api", "the API reaches streams through its Streams interface, not the reverse", false},
	{"internal/consumer", module + "/internal/hub", "the consumers publish through a function the server hands them, not through the engine", false},
	{"internal/consumer/postgres", module + "/internal/hub", "the consumers publish through a function the server hands them, not through the engine", false},
	{"internal/consumer/kafka", module + "/internal/hub", "the consumers publish through a function the server hands them, not through the engine", false},
	{"internal/consumer/postgres", module + "/internal/transport", "the consumers know nothing of transports", false},
	{"internal/consumer/kafka", module + "/internal/transport", "the consumers know nothing of transports", false},
	{"internal/consumer/postgres", "github.com/twmb/", "each consumer links only its own client library", false},
	{"internal/consumer/kafka", "github.com/jackc/", "each consumer links only its own client library", false},
}

func TestDependencyDirection(t *testing.T) {
	for _, f := range forbidden {
		args := []string{"list", "-deps", module + "/" + f.pkg}
		if f.direct {
			args = []string{"list", "-f", `{{join .Imports " "}}`, module + "/" + f.pkg}
		}
		out, err := exec.Command("go", args...).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", f.pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep == module+"/"+f.pkg || dep == module+"/internal/broker" && f.pkg == "internal/broker/memory" {
				continue
			}
			if f.dep == module+"/" && f.pkg == "internal/broker" && dep == module+"/internal/broker" {
				continue
			}
			if strings.HasPrefix(dep, f.dep) || dep == f.dep {
				t.Errorf("%s imports %s: %s", f.pkg, dep, f.why)
			}
		}
	}
}

// TestDocComments checks that every package has a package comment and every
// exported top-level name in non-test files has a doc comment.
func TestDocComments(t *testing.T) {
	root := ".."
	dirs := map[string]bool{}
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = true
		}
		return nil
	})
	for dir := range dirs {
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range pkgs {
			hasDoc := false
			for _, f := range pkg.Files {
				if f.Doc != nil {
					hasDoc = true
				}
				for _, decl := range f.Decls {
					checkDecl(t, fset, decl)
				}
			}
			if !hasDoc {
				t.Errorf("package %s (%s) has no package comment", pkg.Name, dir)
			}
		}
	}
}

func checkDecl(t *testing.T, fset *token.FileSet, decl ast.Decl) {
	switch d := decl.(type) {
	case *ast.FuncDecl:
		if d.Name.IsExported() && d.Doc == nil && (d.Recv == nil || exportedRecv(d.Recv)) {
			t.Errorf("%s: %s has no doc comment", fset.Position(d.Pos()), d.Name.Name)
		}
	case *ast.GenDecl:
		for _, spec := range d.Specs {
			switch s := spec.(type) {
			case *ast.TypeSpec:
				if s.Name.IsExported() && d.Doc == nil && s.Doc == nil {
					t.Errorf("%s: type %s has no doc comment", fset.Position(s.Pos()), s.Name.Name)
				}
			case *ast.ValueSpec:
				for _, n := range s.Names {
					if n.IsExported() && d.Doc == nil && s.Doc == nil && s.Comment == nil {
						t.Errorf("%s: %s has no doc comment", fset.Position(n.Pos()), n.Name)
					}
				}
			}
		}
	}
}

func exportedRecv(fl *ast.FieldList) bool {
	if len(fl.List) == 0 {
		return false
	}
	typ := fl.List[0].Type
	if st, ok := typ.(*ast.StarExpr); ok {
		typ = st.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.IsExported()
	}
	return true
}
