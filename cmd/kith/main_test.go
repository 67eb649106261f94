package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith/collect"
)

// startServer runs a real Kith on the embedded store at 127.0.0.1:0.
func startServer(t *testing.T) *Server {
	t.Helper()
	return startServerIn(t, t.TempDir())
}

// startServerIn runs a real Kith on the embedded store in dir, as
// startServer does; starting it again on the same dir is a restart.
func startServerIn(t *testing.T, dir string) *Server {
	t.Helper()
	s := &Server{Config: ServeConfig{
		DataDir: dir, Addr: "127.0.0.1:0", AdminToken: "cli-test-admin-token",
		DedupWindow: time.Hour, Limits: collect.DefaultLimits(), MaxBacklog: 1000, BatchSize: 100,
	}}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// cli runs one kith command against the server and returns its output.
func cli(t *testing.T, s *Server, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	// Flags after the positional arguments, as people type them.
	full := append(args, "--server", "http://"+s.Addr(), "--token", s.Config.AdminToken)
	err := run(context.Background(), full, &out, &errOut)
	return out.String() + errOut.String(), err
}

func TestCLIAgainstRunningServer(t *testing.T) {
	s := startServer(t)
	out, err := cli(t, s, "source", "create", "webshop")
	if err != nil {
		t.Fatalf("source create: %v\n%s", err, out)
	}
	key := regexp.MustCompile(`write key: (wk_[0-9a-f]+)`).FindStringSubmatch(out)
	id := regexp.MustCompile(`\((src_[0-9a-f]+)\)`).FindStringSubmatch(out)
	if key == nil || id == nil {
		t.Fatalf("source create printed no key or id:\n%s", out)
	}

	// Traffic with that key, one good message and one bad.
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/v1/batch",
		strings.NewReader(`{"batch":[{"type":"track","userId":"u1","event":"Signed Up"},{"type":"track","userId":"u1"}]}`))
	req.SetBasicAuth(key[1], "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("batch: %d", resp.StatusCode)
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = cli(t, s, "stats")
		if err != nil {
			t.Fatalf("stats: %v\n%s", err, out)
		}
		if strings.Contains(out, "webshop         2         1          0         1          1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never showed 2 received, 1 accepted, 1 rejected, 1 processed:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, "missing_event=1") {
		t.Errorf("stats does not name the rejection reason:\n%s", out)
	}

	if out, err = cli(t, s, "source", "list"); err != nil || !strings.Contains(out, "webshop") || !strings.Contains(out, "enabled") {
		t.Fatalf("source list: %v\n%s", err, out)
	}
	if out, err = cli(t, s, "source", "disable", id[1]); err != nil {
		t.Fatalf("source disable: %v\n%s", err, out)
	}
	if out, _ = cli(t, s, "source", "list"); !strings.Contains(out, "disabled") {
		t.Fatalf("source not disabled:\n%s", out)
	}
	out, err = cli(t, s, "token", "create", "reader", "--scopes", "profiles:read")
	if err != nil || !regexp.MustCompile(`token: kt_[0-9a-f]+`).MatchString(out) {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	secret := regexp.MustCompile(`token: (kt_[0-9a-f]+)`).FindStringSubmatch(out)[1]
	tokID := regexp.MustCompile(`\((tok_[0-9a-f]+)\)`).FindStringSubmatch(out)[1]
	if out, err = cli(t, s, "token", "create", "bad", "--scopes", "everything"); err == nil {
		t.Fatalf("a token with an unknown scope was created:\n%s", out)
	}
	if out, err = cli(t, s, "token", "list"); err != nil || !strings.Contains(out, tokID) || !strings.Contains(out, "profiles:read") || strings.Contains(out, secret) {
		t.Fatalf("token list (no secrets): %v\n%s", err, out)
	}
	// The reader can read profiles until it is revoked.
	reader := func() int {
		req, _ := http.NewRequest("GET", "http://"+s.Addr()+"/v1/profiles/user_id:nobody", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := reader(); code != http.StatusNotFound {
		t.Fatalf("reader before revocation: %d", code)
	}
	if out, err = cli(t, s, "token", "revoke", tokID); err != nil {
		t.Fatalf("token revoke: %v\n%s", err, out)
	}
	if code := reader(); code != http.StatusUnauthorized {
		t.Fatalf("reader after revocation: %d, want 401", code)
	}
	out, err = cli(t, s, "audit", "--action", "/v1/tokens")
	if err != nil || !strings.Contains(out, "DELETE /v1/tokens/{id}") || !strings.Contains(out, "id="+tokID) || !strings.Contains(out, "ok 204") {
		t.Fatalf("kith audit: %v\n%s", err, out)
	}
}

func TestCLIErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"server down", []string{"stats", "--server", "http://127.0.0.1:1", "--token", "x"}, "cannot reach the server"},
		{"source without name", []string{"source", "create", "--server", "http://127.0.0.1:1"}, "usage: kith source create NAME"},
		{"bench without mode", []string{"bench"}, "usage: kith bench ingest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestServeConfigPrecedence(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantData string
		wantAddr string
		wantPG   string
		wantMax  int
	}{
		{"defaults", nil, nil, "./kith-data", "127.0.0.1:8080", "", 32 << 10},
		{"env", map[string]string{"KITH_DATA": "/d", "KITH_ADDR": ":9", "KITH_POSTGRES_URL": "postgres://x", "KITH_MAX_EVENT_BYTES": "100"}, nil, "/d", ":9", "postgres://x", 100},
		{"flags win", map[string]string{"KITH_DATA": "/d"}, []string{"--data", "/f", "--addr", ":7", "--max-event-bytes", "5"}, "/f", ":7", "", 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"KITH_DATA", "KITH_ADDR", "KITH_POSTGRES_URL", "KITH_MAX_EVENT_BYTES"} {
				t.Setenv(k, tc.env[k])
			}
			c, err := ParseServeFlags(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.DataDir != tc.wantData || c.Addr != tc.wantAddr || c.PostgresURL != tc.wantPG || c.Limits.MaxEventBytes != tc.wantMax {
				t.Fatalf("got %+v", c)
			}
			if c.DedupWindow != 7*24*time.Hour || c.Limits.MaxMessageIDLen != 100 {
				t.Fatalf("defaults lost: %+v", c)
			}
		})
	}
}
