package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDemo runs `kith demo` until the test ends and returns its URL and
// admin token once /healthz answers 200, and whether it answered 503
// while loading.
func startDemo(t *testing.T, dir, customers, seed string) (url, token string, saw503 bool, out *syncBuffer) {
	t.Helper()
	t.Setenv("KITH_ADMIN_TOKEN", "")
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"demo", "--data", dir, "--addr", "127.0.0.1:0", "--customers", customers, "--seed", seed, "--insights-every", "0"}, out, &syncBuffer{})
	}()
	stopped := false
	t.Cleanup(func() {
		cancel()
		if stopped {
			return
		}
		if err := <-done; err != nil {
			t.Errorf("kith demo: %v", err)
		}
	})
	urlRe := regexp.MustCompile(`Kith demo at (http://[0-9.:]+)`)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if m := urlRe.FindStringSubmatch(out.String()); m != nil && url == "" {
			url = m[1]
		}
		if url != "" {
			resp, err := http.Get(url + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					saw503 = true
				}
				if resp.StatusCode == http.StatusOK {
					m := regexp.MustCompile(`admin token: (\S+)`).FindStringSubmatch(out.String())
					if m == nil {
						t.Fatalf("no token printed:\n%s", out)
					}
					return url, m[1], saw503, out
				}
			}
		}
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("kith demo stopped: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("the demo did not become ready:\n%s", out)
	return
}

func getJSON(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	url, token, saw503, out := startDemo(t, dir, "400", "7")
	if !saw503 {
		t.Error("/healthz never answered 503 while the demo loaded")
	}
	var res demoResult
	b, err := os.ReadFile(filepath.Join(dir, demoMarker))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	// Identity against the ground truth: exact identifiers never join two
	// people; recall is what probabilistic matching adds to.
	id := res.Identity
	if id.ExactIDs.Precision < 0.999 || id.ExactIDs.Recall < 0.9 || id.AfterMatching.F1 < id.ExactIDs.F1-0.005 || id.ExactIDs.People != 400 {
		t.Fatalf("identity scores %+v", id)
	}
	// Every source was loaded, nothing rejected, everything processed.
	var st struct {
		Sources []struct {
			Name      string
			Accepted  int64
			Processed int64
			Rejected  map[string]int64
		}
	}
	getJSON(t, url+"/v1/stats", token, &st)
	names := map[string]bool{}
	for _, s := range st.Sources {
		names[s.Name] = true
		if s.Accepted == 0 || s.Processed != s.Accepted || len(s.Rejected) != 0 {
			t.Errorf("source %s: %+v", s.Name, s)
		}
	}
	for _, n := range []string{"webshop", "app", "crm", "pos", "email"} {
		if !names[n] {
			t.Errorf("no source %s in %v", n, names)
		}
	}
	for _, imp := range res.Imports {
		if imp.Summary.Rejected != 0 || imp.Summary.Read == 0 {
			t.Errorf("import %s: %+v", imp.File, imp.Summary)
		}
	}
	if res.Audiences["loyal_customers"] == 0 || res.Audiences["lapsed_customers"] == 0 || res.DMP.Matched == 0 || res.DMP.Unmatched == 0 {
		t.Errorf("audiences %v, DMP %+v", res.Audiences, res.DMP)
	}
	// The sample customer is seen in at least three channels.
	if res.Sample == "" || !strings.Contains(out.String(), res.Sample) {
		t.Fatalf("no sample customer printed: %q", res.Sample)
	}
	var ev struct {
		Data []struct {
			Context struct {
				Library struct{ Name string }
				Import  struct{ File string }
			}
		}
	}
	getJSON(t, url+"/v1/profiles/"+res.Sample+"/events?limit=1000", token, &ev)
	channels := map[string]bool{}
	for _, e := range ev.Data {
		ch := e.Context.Library.Name
		if ch == "kith-import" {
			ch = e.Context.Import.File
		}
		channels[ch] = true
	}
	if len(channels) < 3 {
		t.Fatalf("sample customer %s has events from %v", res.Sample, channels)
	}
}

// Running the demo again on its directory serves the data it loaded,
// without loading it twice.
func TestDemoRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	{
		ctx, cancel := context.WithCancel(context.Background())
		out := &syncBuffer{}
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"demo", "--data", dir, "--addr", "127.0.0.1:0", "--customers", "50", "--insights-every", "0"}, out, &syncBuffer{})
		}()
		for !strings.Contains(out.String(), "The demo is ready") {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, demoMarker))
	url, token, _, out := startDemo(t, dir, "50", "1")
	if strings.Contains(out.String(), "loading 50 customers") {
		t.Fatal("the second run loaded the data again")
	}
	after, _ := os.ReadFile(filepath.Join(dir, demoMarker))
	if !bytes.Equal(before, after) {
		t.Fatal("the marker changed")
	}
	var st struct{ Totals struct{ Accepted int64 } }
	getJSON(t, url+"/v1/stats", token, &st)
	var res demoResult
	json.Unmarshal(after, &res)
	var events int64
	for _, n := range res.Dataset.Events {
		events += int64(n)
	}
	for _, imp := range res.Imports {
		events += imp.Summary.Messages
	}
	if st.Totals.Accepted != events {
		t.Fatalf("accepted %d events, the dataset has %d", st.Totals.Accepted, events)
	}
	// Another seed on the same directory is refused.
	err := run(context.Background(), []string{"demo", "--data", dir, "--customers", "50", "--seed", "2"}, &syncBuffer{}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "another --data directory") {
		t.Fatalf("another seed on the same directory: %v", err)
	}
}
