package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kithcdp/kith/collect"
)

// startServerOn runs a real Kith on the embedded store in dir, with the
// indexer's default batch size and a backlog limit the backup test's load
// never reaches.
func startServerOn(t *testing.T, dir string) *Server {
	t.Helper()
	s := &Server{Config: ServeConfig{
		DataDir: dir, Addr: "127.0.0.1:0", AdminToken: "backup-test-admin-token",
		DedupWindow: time.Hour, Limits: collect.DefaultLimits(), MaxBacklog: 1 << 30, BatchSize: 20000,
	}}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const (
	backupPerBatch = 50
	backupUsers    = 100
)

func backupID(b, j int) string { return fmt.Sprintf("bk-%04d-%02d", b, j) }
func backupUser(b, j int) string {
	return fmt.Sprintf("bk-user-%03d", (b*backupPerBatch+j)%backupUsers)
}
func backupUserRef(u int) string { return fmt.Sprintf("user_id:bk-user-%03d", u) }

// backupBody is batch b: backupPerBatch track events with their own
// messageIds, spread over the users.
func backupBody(b int) []byte {
	var items []map[string]any
	for j := 0; j < backupPerBatch; j++ {
		items = append(items, map[string]any{"type": "track", "messageId": backupID(b, j), "event": "Tick",
			"userId": backupUser(b, j), "properties": map[string]any{"batch": b}})
	}
	body, _ := json.Marshal(map[string]any{"batch": items})
	return body
}

// postBackupBatch sends batch b and returns how many of its events were
// accepted and how many were duplicates; anything but a 200 with nothing
// rejected is an error.
func postBackupBatch(s *Server, writeKey string, b int) (accepted, duplicates int, err error) {
	req, _ := http.NewRequest("POST", "http://"+s.Addr()+"/v1/batch", bytes.NewReader(backupBody(b)))
	req.SetBasicAuth(writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Success    bool
		Accepted   int
		Duplicates int
		Rejected   []any
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || !out.Success || len(out.Rejected) > 0 {
		return 0, 0, fmt.Errorf("batch %d: HTTP %d %+v %v", b, resp.StatusCode, out, err)
	}
	return out.Accepted, out.Duplicates, nil
}

type backupStats struct {
	Totals struct {
		Received, Accepted, Duplicate, Processed int64
		Rejected                                 map[string]int64
	}
}

func getStats(t *testing.T, s *Server) backupStats {
	t.Helper()
	code, m := apiJSON(t, s, "GET", "/v1/stats", "")
	if code != 200 {
		t.Fatalf("stats: %d %v", code, m)
	}
	var st backupStats
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// profileEvents counts the messageIds on every test user's timeline.
func profileEvents(t *testing.T, s *Server) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for u := 0; u < backupUsers; u++ {
		path := "/v1/profiles/" + url.PathEscape(backupUserRef(u)) + "/events"
		code, m := apiJSON(t, s, "GET", "/v1/profiles/"+url.PathEscape(backupUserRef(u)), "")
		if code == http.StatusNotFound {
			continue
		} else if code != 200 {
			t.Fatalf("GET profile %s: %d %v", backupUserRef(u), code, m)
		}
		next := ""
		for {
			code, m := apiJSON(t, s, "GET", path+"?limit=1000&next="+url.QueryEscape(next), "")
			if code != 200 {
				t.Fatalf("GET %s: %d %v", path, code, m)
			}
			for _, e := range m["data"].([]any) {
				seen[e.(map[string]any)["messageId"].(string)]++
			}
			c := m["cursor"].(map[string]any)
			if c["has_more"] != true {
				break
			}
			next = c["next"].(string)
		}
	}
	return seen
}

// TestBackupUnderLoadAndRestore backs up a running server's store with
// `kith backup` while events are being sent to it, restores the backup with
// `kith restore` into a new directory, serves it, and checks that every
// event acknowledged before the backup began is there exactly once, that
// the derived state was rebuilt (profiles, timelines, the audience), that
// the counters add up, and that the credentials and the deduplication
// carried over.
func TestBackupUnderLoadAndRestore(t *testing.T) {
	liveDir := t.TempDir()
	s := startServerOn(t, liveDir)
	out, err := cli(t, s, "source", "create", "shop")
	if err != nil {
		t.Fatalf("source create: %v\n%s", err, out)
	}
	key := regexp.MustCompile(`write key: (wk_[0-9a-f]+)`).FindStringSubmatch(out)[1]
	if out, err := cli(t, s, "audience", "create", "ticked", `count(event "Tick" within 30d) >= 1`); err != nil {
		t.Fatalf("audience create: %v\n%s", err, out)
	}

	// Load: four senders, batches numbered in order of sending.
	var (
		mu      sync.Mutex
		acked   []int // batch numbers in order of acknowledgement
		next    int
		failure error
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				b := next
				next++
				mu.Unlock()
				n, _, err := postBackupBatch(s, key, b)
				mu.Lock()
				if err == nil && n != backupPerBatch {
					err = fmt.Errorf("batch %d: %d accepted", b, n)
				}
				if err != nil && failure == nil {
					failure = err
				}
				if err == nil {
					acked = append(acked, b)
				}
				mu.Unlock()
			}
		}()
	}
	waitAcked := func(n int) []int {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			got, f := append([]int(nil), acked...), failure
			mu.Unlock()
			if f != nil {
				close(stop)
				wg.Wait()
				t.Fatalf("load: %v", f)
			}
			if len(got) >= n {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d batches acknowledged, want %d", len(got), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	before := waitAcked(40)
	file := filepath.Join(t.TempDir(), "kith.backup.tar.gz")
	var bout, berr bytes.Buffer
	if err := run(context.Background(), []string{"backup", "--data", liveDir, "--out", file}, &bout, &berr); err != nil {
		t.Fatalf("kith backup: %v\n%s%s", err, bout.String(), berr.String())
	}
	during := waitAcked(0)
	waitAcked(len(during) + 20) // the load went on after the backup
	close(stop)
	wg.Wait()
	if failure != nil {
		t.Fatalf("load: %v", failure)
	}
	t.Logf("kith backup, with %d batches acknowledged before it and %d when it ended:\n%s", len(before), len(during), bout.String())
	if !strings.Contains(bout.String(), "written to "+file) || !strings.Contains(bout.String(), "log.db") {
		t.Errorf("kith backup's summary:\n%s", bout.String())
	}
	var lastSeq, logEvents int64
	if m := regexp.MustCompile(`log:\s+(\d+) events, last position (\d+)`).FindStringSubmatch(bout.String()); m != nil {
		fmt.Sscan(m[1], &logEvents)
		fmt.Sscan(m[2], &lastSeq)
	} else {
		t.Fatalf("kith backup names no log position:\n%s", bout.String())
	}
	if b, _ := os.ReadFile(file); len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Errorf("%s is not gzipped", file)
	}

	// Refusals: the live directory is in use; an existing file is not
	// overwritten.
	var rout bytes.Buffer
	if err := run(context.Background(), []string{"restore", "--in", file, "--data", liveDir, "--force"}, &rout, &rout); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("restore into the running server's directory: %v\n%s", err, rout.String())
	}
	if err := run(context.Background(), []string{"backup", "--data", liveDir, "--out", file}, &rout, &rout); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("backup over an existing file: %v", err)
	}

	restored := filepath.Join(t.TempDir(), "restored")
	rout.Reset()
	if err := run(context.Background(), []string{"restore", "--in", file, "--data", restored}, &rout, &rout); err != nil {
		t.Fatalf("kith restore: %v\n%s", err, rout.String())
	}
	if !strings.Contains(rout.String(), "rebuilds state.db") {
		t.Errorf("kith restore's summary:\n%s", rout.String())
	}
	if err := run(context.Background(), []string{"restore", "--in", file, "--data", restored}, &rout, &rout); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a second restore without --force: %v", err)
	}

	// Serve the restored store: the derived state is rebuilt from the log.
	r := startServerOn(t, restored)
	deadline := time.Now().Add(60 * time.Second)
	var st backupStats
	for {
		st = getStats(t, r)
		if st.Totals.Processed == st.Totals.Accepted && st.Totals.Accepted > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restored server did not process its log: %+v", st.Totals)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var rejected int64
	for _, n := range st.Totals.Rejected {
		rejected += n
	}
	if st.Totals.Received != st.Totals.Accepted+st.Totals.Duplicate+rejected {
		t.Errorf("restored accounting does not add up: %+v", st.Totals)
	}
	if st.Totals.Accepted != logEvents {
		t.Errorf("restored server: accepted %d, the backup's log holds %d", st.Totals.Accepted, logEvents)
	}
	seen := profileEvents(t, r)
	for _, b := range before {
		for j := 0; j < backupPerBatch; j++ {
			if seen[backupID(b, j)] != 1 {
				t.Fatalf("event %s, acknowledged before the backup began: on the timelines %d times, want once", backupID(b, j), seen[backupID(b, j)])
			}
		}
	}
	var total int64
	for id, n := range seen {
		total += int64(n)
		if n != 1 {
			t.Errorf("event %s on the timelines %d times", id, n)
		}
	}
	if total != logEvents {
		t.Errorf("the restored timelines hold %d events, the backup's log %d", total, logEvents)
	}
	t.Logf("restored: %d events (the log up to position %d), %d of them acknowledged before the backup began", total, lastSeq, len(before)*backupPerBatch)

	// The audience definition came back and its members are rebuilt.
	users := 0
	for u := 0; u < backupUsers; u++ {
		if code, _ := apiJSON(t, r, "GET", "/v1/profiles/"+url.PathEscape(backupUserRef(u)), ""); code == 200 {
			users++
		}
	}
	for {
		code, m := apiJSON(t, r, "GET", "/v1/audiences/ticked", "")
		if code != 200 {
			t.Fatalf("the audience did not survive the restore: %d %v", code, m)
		}
		if size, _ := m["size"].(float64); int(size) == users {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audience size %v after the restore, want %d: %v", m["size"], users, m)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The write key works; what was acknowledged before the backup is a
	// duplicate when sent again (deduplication rebuilt from the log).
	n, dup, err := postBackupBatch(r, key, before[0])
	if err != nil || n != 0 || dup != backupPerBatch {
		t.Errorf("resending batch %d after the restore: accepted %d, duplicates %d, %v; want all duplicates", before[0], n, dup, err)
	}
}

// TestBackupToStandardOutput writes the backup into a pipe: the archive on
// standard output, the summary on standard error; it restores from the
// bytes written.
func TestBackupToStandardOutput(t *testing.T) {
	s := startServer(t)
	if out, err := cli(t, s, "source", "create", "shop"); err != nil {
		t.Fatalf("source create: %v\n%s", err, out)
	}
	var archive, msgs bytes.Buffer
	if err := run(context.Background(), []string{"backup", "--data", s.Config.DataDir, "--out", "-", "--gzip"}, &archive, &msgs); err != nil {
		t.Fatalf("kith backup --out -: %v\n%s", err, msgs.String())
	}
	if !strings.Contains(msgs.String(), "written to standard output") || strings.Contains(archive.String(), "written to") {
		t.Fatalf("the summary must go to standard error only:\n%s", msgs.String())
	}
	file := filepath.Join(t.TempDir(), "piped.backup")
	if err := os.WriteFile(file, archive.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	dir := t.TempDir()
	if err := run(context.Background(), []string{"restore", "--in", file, "--data", dir, "--json"}, &out, &out); err != nil {
		t.Fatalf("kith restore: %v\n%s", err, out.String())
	}
	var m struct {
		Format string
		Files  []struct{ Name string }
	}
	if err := json.Unmarshal(out.Bytes(), &m); err != nil || m.Format != "kith-backup" || len(m.Files) != 3 {
		t.Fatalf("kith restore --json: %v\n%s", err, out.String())
	}
	r := startServerOn(t, dir)
	code, body := apiJSON(t, r, "GET", "/v1/sources", "")
	if code != 200 || !strings.Contains(fmt.Sprint(body), "shop") {
		t.Fatalf("sources after the restore: %d %v", code, body)
	}
}

func TestBackupCLIErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"backup"}, "--out FILE is required"},
		{[]string{"backup", "--data", missing, "--out", "-"}, "is it a Kith data directory"},
		{[]string{"restore"}, "--in FILE is required"},
		{[]string{"restore", "--in", missing, "--data", t.TempDir()}, "no such file"},
		{[]string{"backup", "--out", "-", "extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("kith %s: %v, want it to mention %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"backup", "--help"}, &out, &out); err == nil || !strings.Contains(out.String(), "consistent backup") || !strings.Contains(out.String(), "-tmp") {
		t.Errorf("kith backup --help:\n%s", out.String())
	}
}
