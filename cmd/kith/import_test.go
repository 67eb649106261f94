package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sourceCounts returns the accounting of the source called name.
func sourceCounts(t *testing.T, s *Server, name string) map[string]any {
	t.Helper()
	_, st := apiJSON(t, s, "GET", "/v1/stats", "")
	for _, x := range st["sources"].([]any) {
		src := x.(map[string]any)
		if src["name"] == name {
			return src
		}
	}
	t.Fatalf("no source %q in %v", name, st["sources"])
	return nil
}

func TestImportCommand(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	cases := []struct {
		source, mapping string
		read, acc, rej  int
	}{
		{"crm", "crm_contacts", 13, 7, 6},
		{"pos", "orders", 15, 8, 7},
		{"email", "email_engagement", 11, 7, 4},
	}
	for _, tc := range cases {
		rejects := filepath.Join(dir, tc.mapping+".rejects.csv")
		input := filepath.Join("..", "..", "mappings", tc.mapping+".csv")
		out, err := cli(t, s, "import", "--source", tc.source, "--mapping", tc.mapping, "--rejects", rejects, input)
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.mapping, err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := fmt.Sprintf("read=%d accepted=%d rejected=%d already_imported=0", tc.read, tc.acc, tc.rej)
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, want) {
			t.Fatalf("%s: last line %q, want %q...", tc.mapping, last, want)
		}
		b, _ := os.ReadFile(rejects)
		if n := strings.Count(string(b), "\n"); n != tc.rej+1 {
			t.Fatalf("%s: rejects file has %d lines, want header + %d:\n%s", tc.mapping, n, tc.rej, b)
		}
		// The source's accounting shows the import: the accepted messages
		// and every rejected row.
		c := sourceCounts(t, s, tc.source)
		var rejected float64
		for _, n := range c["rejected"].(map[string]any) {
			rejected += n.(float64)
		}
		if int(rejected) != tc.rej {
			t.Fatalf("%s: source counts %d rejections, want %d", tc.source, int(rejected), tc.rej)
		}
		// Again: nothing new is stored.
		out, err = cli(t, s, "import", "--source", tc.source, "--mapping", tc.mapping, "--rejects", rejects, input)
		if err != nil {
			t.Fatal(err)
		}
		want = fmt.Sprintf("read=%d accepted=%d rejected=%d already_imported=%d", tc.read, tc.acc, tc.rej, tc.acc)
		if !strings.Contains(out, want) {
			t.Fatalf("%s again: %q, want %q", tc.mapping, out, want)
		}
		if c2 := sourceCounts(t, s, tc.source); c2["accepted"] != c["accepted"] {
			t.Fatalf("%s: the second import stored events: %v then %v", tc.source, c["accepted"], c2["accepted"])
		}
	}
	waitProcessed(t, s)

	// The channels meet in one profile: Ada's CRM contact (account u-1001,
	// card LC-400001), her till receipt (card only) and her e-mail opens
	// (address only).
	code, ev := apiJSON(t, s, "GET", "/v1/profiles/user_id:u-1001/events?limit=50", "")
	if code != http.StatusOK {
		t.Fatalf("profile of u-1001: %d %v", code, ev)
	}
	got := map[string]int{}
	for _, e := range ev["data"].([]any) {
		m := e.(map[string]any)
		name, _ := m["event"].(string)
		if name == "" {
			name, _ = m["type"].(string)
		}
		got[name]++
	}
	if got["identify"] != 1 || got["Order Completed"] != 1 || got["Email Delivered"] != 2 || got["Email Opened"] != 1 || got["Email Link Clicked"] != 1 {
		t.Fatalf("u-1001's timeline across channels: %v", got)
	}
}

func TestImportUpload(t *testing.T) {
	s := startServer(t)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("source", "esp")
	mw.WriteField("mapping", "email_engagement")
	fw, _ := mw.CreateFormFile("file", "email_engagement.csv")
	f, _ := os.Open(filepath.Join("..", "..", "mappings", "email_engagement.csv"))
	io.Copy(fw, f)
	f.Close()
	mw.Close()
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/v1/imports", &body)
	req.Header.Set("Authorization", "Bearer "+s.Config.AdminToken)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct {
		Source struct {
			Name    string
			Created bool
		}
		Summary struct{ Read, Accepted, Rejected int }
		Rejects []struct {
			Line   int
			Reason string
		}
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	json.Unmarshal(b, &res)
	if res.Source.Name != "esp" || !res.Source.Created || res.Summary.Read != 11 || res.Summary.Accepted != 7 || res.Summary.Rejected != 4 || len(res.Rejects) != 4 {
		t.Fatalf("upload answer %s", b)
	}
	if res.Rejects[0].Line != 6 || res.Rejects[0].Reason != "missing_field" || res.Rejects[3].Line != 11 || res.Rejects[3].Reason != "malformed_row" {
		t.Fatalf("rejects %+v", res.Rejects)
	}

	// A file before its mapping, and a token without imports:write, are refused.
	code, _ := apiJSON(t, s, "POST", "/v1/imports/batch", `{"source":"x","batch":[],"rejected":{"bad":-1}}`)
	if code != http.StatusBadRequest {
		t.Fatalf("negative rejected count: %d", code)
	}
}

// TestImportSinkRetries: overload and server errors are retried, a
// rejected request is not, and the API's message reaches the user.
func TestImportSinkRetries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		body      string
		retryable bool
		want      string
	}{
		{"ok", 200, `{"n":3}`, false, ""},
		{"overloaded", 429, `{"error":{"code":"overloaded","message":"slow down"}}`, true, "slow down (overloaded)"},
		{"server error", 503, `not json`, true, "server answered HTTP 503"},
		{"rejected", 400, `{"error":{"code":"invalid","message":"batch must be an array"}}`, false, "batch must be an array (invalid)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != "/v1/imports/batch" {
					http.Error(w, "wrong request", http.StatusTeapot)
					return
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			h := &httpImportSink{c: &client{server: srv.URL, token: "tok", http: defaultHTTPClient()}}
			var out struct{ N int }
			err := h.post(context.Background(), []byte(`{}`), &out)
			var r *retryable
			if errors.As(err, &r) != tc.retryable {
				t.Fatalf("retryable = %v, want %v (err %v)", !tc.retryable, tc.retryable, err)
			}
			if tc.want == "" {
				if err != nil || out.N != 3 {
					t.Fatalf("post = %v, %+v", err, out)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	h := &httpImportSink{c: &client{server: "http://127.0.0.1:1", token: "tok", http: defaultHTTPClient()}}
	var r *retryable
	if err := h.post(context.Background(), []byte(`{}`), nil); !errors.As(err, &r) || !strings.Contains(err.Error(), "cannot reach the server") {
		t.Fatalf("no server: %v", err)
	}
}
