package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/httpapi"
	"github.com/kithcdp/kith/storetest"
)

// Text no store can hold (a NUL character, invalid UTF-8) is refused at
// the door on every path, and one poisoned item never fails anyone else's
// request or stops a worker — on both stores, since PostgreSQL is the one
// that refuses such text.

// startStore runs a real Kith on the named store ("embedded" or
// "postgres"); postgres needs KITH_TEST_POSTGRES_URL.
func startStore(t *testing.T, store string) *Server {
	t.Helper()
	if store == "embedded" {
		return startServer(t)
	}
	s := &Server{Config: ServeConfig{
		PostgresURL: storetest.CreateDatabase(t, storetest.PostgresURL(t)), Addr: "127.0.0.1:0", AdminToken: "cli-test-admin-token",
		DedupWindow: time.Hour, Limits: collect.DefaultLimits(), MaxBacklog: 1000, BatchSize: 100,
	}}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawRequest sends a request with an admin token (or, if user is set,
// Basic auth with that write key) and returns the status and body.
func rawRequest(t *testing.T, s *Server, method, path, body, user string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.Addr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, "")
	} else {
		req.Header.Set("Authorization", "Bearer "+s.Config.AdminToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// healthy fails the test unless /healthz says ok.
func healthy(t *testing.T, s *Server) {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"ok"`) {
		t.Fatalf("/healthz: %d %s", resp.StatusCode, b)
	}
}

func forEachStore(t *testing.T, f func(t *testing.T, s *Server)) {
	for _, store := range []string{"embedded", "postgres"} {
		t.Run(store, func(t *testing.T) { f(t, startStore(t, store)) })
	}
}

// Every route with a path value, called with a NUL or an invalid byte in
// it, answers 404 (no such thing can exist), is audited with what it sent,
// and leaves the audit writer and every other route working.
func TestHostilePathValues(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Server) {
		n := 0
		for _, rt := range s.api.Routes() {
			method, pattern, _ := strings.Cut(rt.Pattern, " ")
			if !strings.Contains(pattern, "{") || rt.Auth != httpapi.AuthToken {
				continue
			}
			for _, bad := range []string{"%00", "p_%ff"} {
				path := routeValue.ReplaceAllString(pattern, bad)
				code, body := rawRequest(t, s, method, path, `{}`, "")
				if code != http.StatusNotFound {
					t.Errorf("%s %s: %d %s, want 404", method, path, code, body)
				}
				n++
			}
		}
		if n < 20 {
			t.Fatalf("only %d routes with a path value were tried", n)
		}
		// Refusals are audited, with the bad value quoted, and the audit
		// writer keeps going.
		code, body := rawRequest(t, s, "GET", "/v1/audit?action="+"GET+/v1/insights/runs/{id}&limit=10", "", "")
		if code != 200 || !strings.Contains(body, `id=\"\\x00\"`) || !strings.Contains(body, `id=\"p_\\xff\"`) {
			t.Fatalf("audit of the refused requests: %d %s", code, body)
		}
		// Query parameters too: refused with 400 naming the parameter.
		code, body = rawRequest(t, s, "GET", "/v1/audit?action=%00", "", "")
		if code != 400 || !strings.Contains(body, "query parameter action contains a NUL character") {
			t.Fatalf("NUL in a query parameter: %d %s", code, body)
		}
		if code, _ := rawRequest(t, s, "GET", "/v1/stats", "", ""); code != 200 {
			t.Fatalf("stats after the hostile requests: %d", code)
		}
		healthy(t, s)
	})
}

// A consent category with a NUL is refused at the door naming the field;
// one already in the log (written before the door checked) is set aside by
// the indexer, which goes on with the events after it.
func TestHostileConsentAndPoisonedLog(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Server) {
		postBatch(t, s, "web", `{"batch":[{"type":"identify","userId":"c1","traits":{"name":"Cee"}}]}`)
		waitProcessed(t, s)
		code, body := rawRequest(t, s, "PUT", "/v1/profiles/user_id:c1/consent", `{"Adv\u0000ertising":true}`, "")
		if code != 400 || !strings.Contains(body, `name contains a NUL character`) || !strings.Contains(body, `Adv\\x00ertising`) {
			t.Fatalf("NUL consent category: %d %s", code, body)
		}
		code, body = rawRequest(t, s, "PUT", "/v1/profiles/user_id:c1/consent", "{\"Adv\xffertising\":true}", "")
		if code != 400 || !strings.Contains(body, "not valid UTF-8") {
			t.Fatalf("invalid UTF-8 consent category: %d %s", code, body)
		}

		// Straight into the log, past every door: the consent event the
		// old API wrote, then an ordinary one.
		srcs, err := s.store.Sources(context.Background())
		if err != nil || len(srcs) == 0 {
			t.Fatal(srcs, err)
		}
		now := time.Now().UTC()
		poisoned := kith.Message{SourceID: srcs[0].ID, MessageID: "poison-1", Type: "track", Event: "Segment Consent Preference Updated",
			UserID: "c1", Timestamp: now, ReceivedAt: now,
			Raw: json.RawMessage(`{"type":"track","event":"Segment Consent Preference Updated","userId":"c1","messageId":"poison-1","context":{"consent":{"categoryPreferences":{"Adv\u0000ertising":true}}}}`)}
		after := poisoned
		after.MessageID, after.Type, after.Event = "after-1", "identify", ""
		after.Raw = json.RawMessage(`{"type":"identify","userId":"c1","messageId":"after-1","traits":{"plan":"gold"}}`)
		if _, err := s.store.Append(context.Background(), kith.AppendBatch{Events: []kith.Message{poisoned, after}}); err != nil {
			t.Fatal(err)
		}
		s.indexer.Notify(nil)
		waitProcessed(t, s)
		code, body = rawRequest(t, s, "GET", "/v1/profiles/user_id:c1/traits", "", "")
		if code != 200 || !strings.Contains(body, `"gold"`) {
			t.Fatalf("the event after the poisoned one was not applied: %d %s", code, body)
		}
		code, body = rawRequest(t, s, "GET", "/v1/profiles/user_id:c1/consent", "", "")
		if code != 200 || strings.Contains(body, "ertising") {
			t.Fatalf("consent after the poisoned event: %d %s", code, body)
		}
		_, metrics := rawRequest(t, s, "GET", "/metrics", "", "")
		if !strings.Contains(metrics, `kith_worker_skipped_total{worker="indexer"} 1`) || !strings.Contains(metrics, `kith_worker_failing{worker="indexer"} 0`) {
			t.Fatalf("metrics do not show the event set aside:\n%s", metrics)
		}
		healthy(t, s)
	})
}

// Two senders of a poisoned import batch beside eight ordinary clients:
// the poisoned requests are refused (400, naming the field), every
// ordinary one is stored, and the counts add up.
func TestHostileBatchBesideOtherClients(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Server) {
		out, err := cli(t, s, "source", "create", "web")
		if err != nil {
			t.Fatal(err)
		}
		key := strings.Fields(out[strings.Index(out, "wk_"):])[0]
		const clients, each = 8, 40
		var wg sync.WaitGroup
		errs := make(chan string, 2*each+clients*each)
		for p := range 2 {
			wg.Go(func() {
				for i := range each {
					code, body := rawRequest(t, s, "POST", "/v1/imports/batch",
						fmt.Sprintf(`{"source":"web","batch":[],"rejected":{"x\u0000%d-%d":1}}`, p, i), "")
					if code != 400 || !strings.Contains(body, "NUL") {
						errs <- fmt.Sprintf("poisoned batch: %d %s", code, body)
					}
				}
			})
		}
		for c := range clients {
			wg.Go(func() {
				for i := range each {
					code, body := rawRequest(t, s, "POST", "/v1/track", fmt.Sprintf(`{"userId":"u%d","event":"Viewed","messageId":"m-%d-%d"}`, c, c, i), key)
					if code != 200 {
						errs <- fmt.Sprintf("ordinary track: %d %s", code, body)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		waitProcessed(t, s)
		_, body := rawRequest(t, s, "GET", "/v1/stats", "", "")
		var st struct {
			Totals struct {
				Received, Accepted, Processed int64
				Rejected                      map[string]int64
			} `json:"totals"`
		}
		json.Unmarshal([]byte(body), &st)
		if st.Totals.Accepted != clients*each || st.Totals.Processed != clients*each || len(st.Totals.Rejected) != 0 {
			t.Fatalf("stats: %s", body)
		}
		healthy(t, s)
	})
}

// routeValue matches a path value in a route pattern.
var routeValue = regexp.MustCompile(`\{[a-z]+\}`)

// The console refuses what no store can hold the same way, and finds a
// customer whose name holds characters JSON encoders escape.
func TestHostileConsole(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *Server) {
		postBatch(t, s, "web", `{"batch":[
			{"type":"identify","userId":"u-amp","traits":{"firstName":"<Ann & Co>"}},
			{"type":"identify","userId":"u-esc","traits":{"firstName":"\u003cAnn \u0026 Sons"}}]}`)
		waitProcessed(t, s)
		b := newBrowser(t, s)
		if code, _, _ := b.do("POST", "/login", url.Values{"token": {s.Config.AdminToken}}); code != http.StatusSeeOther {
			t.Fatalf("sign in: %d", code)
		}
		for _, tc := range []struct {
			path string
			want int
		}{
			{"/customers/%00", 404}, {"/customers/p_%ff", 404}, {"/customers/%00/export", 404},
			{"/audiences/%ff", 404}, {"/customers?q=%00", 400}, {"/customers?q=Ann%ff", 400},
		} {
			if code, page, _ := b.do("GET", tc.path, nil); code != tc.want {
				t.Errorf("GET %s: %d, want %d\n%.300s", tc.path, code, tc.want, page)
			}
		}
		code, page, _ := b.do("GET", "/customers?q="+url.QueryEscape("<Ann &"), nil)
		if code != 200 || !strings.Contains(page, "&lt;Ann &amp; Co&gt;") || !strings.Contains(page, "&lt;Ann &amp; Sons") {
			t.Fatalf("name search with < and &: %d\n%s", code, page)
		}
		healthy(t, s)
	})
}

// A full disk acknowledges nothing it could not store and answers 503 with
// Retry-After (SDKs back off), and collection recovers without a restart
// once there is space: every acknowledged event is stored exactly once.
// The disk is a small tmpfs mounted for the test (root only).
func TestDiskFullAnswers503(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", dir).CombinedOutput(); err != nil {
		storetest.Unavailable(t, fmt.Sprintf("cannot mount a small tmpfs to fill (needs root): %v %s", err, out))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	s := &Server{Config: ServeConfig{
		DataDir: dir, Addr: "127.0.0.1:0", AdminToken: "cli-test-admin-token",
		DedupWindow: time.Hour, Limits: collect.DefaultLimits(), MaxBacklog: 1_000_000, BatchSize: 100,
	}}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	out, err := cli(t, s, "source", "create", "web")
	if err != nil {
		t.Fatal(err)
	}
	key := strings.Fields(out[strings.Index(out, "wk_"):])[0]
	pad := strings.Repeat("x", 2000)
	send := func(n int) *http.Response {
		var items []string
		for i := range 50 {
			items = append(items, fmt.Sprintf(`{"type":"track","userId":"u%d","event":"Viewed","messageId":"m-%d-%d","properties":{"pad":%q}}`, i, n, i, pad))
		}
		req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/v1/batch", strings.NewReader(`{"batch":[`+strings.Join(items, ",")+`]}`))
		req.SetBasicAuth(key, "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	acked, full := 0, -1
	for n := 0; n < 400 && full < 0; n++ {
		switch resp := send(n); resp.StatusCode {
		case 200:
			acked += 50
		case 503:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			full = n
		default:
			t.Fatalf("batch %d on a filling disk: %d, want 200 or 503", n, resp.StatusCode)
		}
	}
	if full < 0 || acked == 0 {
		t.Fatalf("the disk never filled (acknowledged %d events)", acked)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=256m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	// The refused batch, sent again, and one more: stored now.
	for _, n := range []int{full, full + 1} {
		if resp := send(n); resp.StatusCode != 200 {
			t.Fatalf("batch %d after space was freed: %d", n, resp.StatusCode)
		}
		acked += 50
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := rawRequest(t, s, "GET", "/v1/stats", "", "")
		var st struct {
			Totals struct{ Received, Accepted, Duplicate, Processed int64 } `json:"totals"`
		}
		json.Unmarshal([]byte(body), &st)
		if st.Totals.Accepted == int64(acked) && st.Totals.Processed == int64(acked) && st.Totals.Duplicate == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acknowledged %d events; stats %s", acked, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	healthy(t, s)
}

// An admin body is one JSON value: what follows it is refused, not
// silently ignored.
func TestAdminBodyIsOneJSONValue(t *testing.T) {
	s := startServer(t)
	postBatch(t, s, "web", `{"batch":[{"type":"identify","userId":"c1"}]}`)
	waitProcessed(t, s)
	code, body := rawRequest(t, s, "PUT", "/v1/profiles/user_id:c1/consent", `{"Advertising":true} {"Analytics":false}`, "")
	if code != 400 || !strings.Contains(body, "more follows the first JSON value") {
		t.Fatalf("two JSON values: %d %s", code, body)
	}
	if code, body := rawRequest(t, s, "PUT", "/v1/profiles/user_id:c1/consent", "{\"Advertising\":true}\n", ""); code != 200 {
		t.Fatalf("one JSON value and a line break: %d %s", code, body)
	}
}
