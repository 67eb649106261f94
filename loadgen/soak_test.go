package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
)

func TestParseUUID(t *testing.T) {
	id, ok := parseUUID("0123abcd-4567-489a-bcde-f0123456789a")
	if !ok || fmt.Sprintf("%x", id) != "0123abcd4567489abcdef0123456789a" {
		t.Fatalf("parseUUID = %x, %v", id, ok)
	}
	for _, bad := range []string{"", "xyz", "0123abcd-4567-489a-bcde-f0123456789", "0123abcd-4567-489a-bcde-f0123456789ab", "0123ABCD-4567-489a-bcde-f0123456789a"} {
		if _, ok := parseUUID(bad); ok {
			t.Errorf("parseUUID(%q) accepted", bad)
		}
	}
	// The generator's messageIds all parse.
	g := NewGenerator(7, 10, time.Now())
	s := &soak{cfg: SoakConfig{BatchSize: 20}, ids: make([][16]byte, 20)}
	noError(t, s.recordIDs(0, g.AppendBatch(nil, 20)))
}

func TestSchedule(t *testing.T) {
	fs := schedule(SoakConfig{Duration: 30 * time.Minute, KillEvery: 90 * time.Second, RestartPostgresEvery: 10 * time.Minute})
	kills, pg := 0, 0
	for i, f := range fs {
		if f.at <= 0 || f.at >= 30*time.Minute {
			t.Errorf("fault %+v outside the load", f)
		}
		if i > 0 && fs[i-1].at > f.at {
			t.Errorf("faults out of order: %+v before %+v", fs[i-1], f)
		}
		switch f.kind {
		case "kill":
			kills++
		case "postgres":
			pg++
		}
	}
	equal(t, "kills in 30 minutes every 90 s", kills, 20)
	equal(t, "PostgreSQL restarts in 30 minutes every 10", pg, 3)
	equal(t, "first fault", fs[0], fault{45 * time.Second, "kill"})
	equal(t, "no faults", len(schedule(SoakConfig{Duration: time.Minute})), 0)
}

// TestCheckStored checks that reading the store finds every way a store
// can be wrong: an acknowledged event missing, an event stored twice, an
// event never sent.
func TestCheckStored(t *testing.T) {
	const bs = 4
	g := NewGenerator(1, 50, time.Now())
	s := &soak{cfg: SoakConfig{BatchSize: bs}, ids: make([][16]byte, 3*bs)}
	var bodies [][]byte
	for i := range 3 {
		b := g.AppendBatch(nil, bs)
		noError(t, s.recordIDs(i, b))
		bodies = append(bodies, b)
	}
	uuid := func(i int) string {
		id := s.ids[i]
		h := fmt.Sprintf("%x", id[:])
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
	for i := range 3 * bs {
		if !bytes.Contains(bodies[i/bs], []byte(uuid(i))) {
			t.Fatalf("id %d (%s) is not in its batch", i, uuid(i))
		}
	}
	acked := func(b int) bool { return b < 2 } // batches 0 and 1
	stored := func(ids ...string) func(func(string)) error {
		return func(fn func(string)) error {
			for _, id := range ids {
				fn(id)
			}
			return nil
		}
	}
	var all []string
	for i := range 2 * bs {
		all = append(all, uuid(i))
	}
	c, err := checkStored(s.ids, bs, acked, stored(all...))
	noError(t, err)
	equal(t, "clean store: missing", c.missing, 0)
	equal(t, "clean store: stored", c.stored, int64(2*bs))

	// Event 5 lost, event 1 twice, one foreign id, one non-UUID, event 9
	// (batch 2, never acknowledged) stored.
	wrong := append([]string{}, all[:5]...)
	wrong = append(wrong, all[6:]...)
	wrong = append(wrong, uuid(1), "00000000-0000-4000-8000-000000000000", "not-a-uuid", uuid(9))
	c, err = checkStored(s.ids, bs, acked, stored(wrong...))
	noError(t, err)
	equal(t, "missing", c.missing, 1)
	equal(t, "repeated", c.repeated, 1)
	equal(t, "foreign", c.foreign, 2)
	equal(t, "stored unacknowledged", c.storedUnacked, 1)
	if len(c.examples) != 1 || !strings.Contains(c.examples[0], "batch 1") {
		t.Errorf("examples %v", c.examples)
	}
	_, err = checkStored(s.ids, bs, acked, func(func(string)) error { return errors.New("boom") })
	if err == nil {
		t.Error("a failing read was not reported")
	}
}

func TestAddsUp(t *testing.T) {
	ok := kith.Counts{Received: 10, Accepted: 6, Duplicate: 2, Rejected: map[string]int64{"x": 1}, Suppressed: 1, Processed: 6}
	noError(t, addsUp(ok))
	bad := ok
	bad.Duplicate = 3
	if addsUp(bad) == nil {
		t.Error("received != the sum passed")
	}
	bad = ok
	bad.Processed = 7
	if addsUp(bad) == nil {
		t.Error("processed > accepted passed")
	}
}

// The helper process of the Process tests: when helperEnv is set, this
// test binary serves GET /healthz on helperAddrEnv, GET /write?path=P
// (writes 2 MiB to P and answers the error, if any) and, for "exit",
// exits with status 3 half a second after it started.
const (
	helperEnv     = "LOADGEN_TEST_HELPER"
	helperAddrEnv = "LOADGEN_TEST_HELPER_ADDR"
)

func TestSoakHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("only runs as the helper process of the Process tests")
	}
	if mode == "exit" {
		time.AfterFunc(500*time.Millisecond, func() { os.Exit(3) })
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		err := os.WriteFile(r.URL.Query().Get("path"), make([]byte, 2<<20), 0o600)
		fmt.Fprint(w, err)
	})
	fmt.Println("helper listening")
	http.ListenAndServe(os.Getenv(helperAddrEnv), mux)
}

func helperProcess(t *testing.T, mode string) *Process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	p := &Process{Path: os.Args[0], Args: []string{"-test.run=^TestSoakHelperProcess$", "-test.count=1"},
		Env: append(os.Environ(), helperEnv+"="+mode, helperAddrEnv+"="+addr), Addr: addr, Log: io.Discard,
		StartTimeout: 30 * time.Second}
	t.Cleanup(func() { p.Kill() })
	return p
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	noError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestProcess starts, kills and restarts a real process, and tells a kill
// from an exit of the process's own.
func TestProcess(t *testing.T) {
	ctx := context.Background()
	p := helperProcess(t, "serve")
	noError(t, p.Start(ctx))
	if err := p.Start(ctx); err == nil {
		t.Fatal("a second Start while running succeeded")
	}
	noError(t, p.Kill())
	if exited, _ := p.Exited(); exited {
		t.Fatal("a killed process counts as having exited on its own")
	}
	if _, err := http.Get("http://" + p.Addr + "/healthz"); err == nil {
		t.Fatal("the killed process still answers")
	}
	noError(t, p.Start(ctx))
	noError(t, p.Stop())

	q := helperProcess(t, "exit")
	noError(t, q.Start(ctx))
	deadline := time.Now().Add(10 * time.Second)
	for {
		exited, err := q.Exited()
		if exited {
			if err == nil || !strings.Contains(err.Error(), "exit status 3") {
				t.Fatalf("exit error %v", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exit was not noticed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if exited, _ := q.Exited(); exited {
		t.Fatal("an exit was reported twice")
	}
}

// TestLimitFileSize caps a running process's file sizes and lifts the cap.
func TestLimitFileSize(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("prlimit(2) is Linux's")
	}
	p := helperProcess(t, "serve")
	noError(t, p.Start(context.Background()))
	path := filepath.Join(t.TempDir(), "f")
	url := "http://" + p.Addr + "/write?path=" + path
	noError(t, p.LimitFileSize(1<<20))
	if got := get(t, url); !strings.Contains(got, "file too large") {
		t.Fatalf("a 2 MiB write under a 1 MiB cap: %q", got)
	}
	noError(t, p.LimitFileSize(0))
	if got := get(t, url); got != "<nil>" {
		t.Fatalf("a 2 MiB write after the cap was lifted: %q", got)
	}
	if info, err := os.Stat(path); err != nil || info.Size() != 2<<20 {
		t.Fatalf("file after the cap was lifted: %v %v", info, err)
	}
}

func TestOutages(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms ...int) []int64 {
		var out []int64
		for _, m := range ms {
			out = append(out, base.Add(time.Duration(m)*time.Millisecond).UnixNano())
		}
		return out
	}
	w := func(from, to int) [2]time.Time {
		return [2]time.Time{base.Add(time.Duration(from) * time.Millisecond), base.Add(time.Duration(to) * time.Millisecond)}
	}
	acks := at(0, 100, 200, 1500, 1600, 1700, 5000)
	got := outages(acks, [][2]time.Time{
		w(150, 300),   // a kill at 150 ms, restarted at 300: next ack at 1500
		w(1550, 1560), // acks went on: the longest gap is up to 1600
		w(1650, 1800), // then nothing until 5000
		w(5100, 5200), // no ack after it: left out
	})
	want := []time.Duration{1300 * time.Millisecond, 50 * time.Millisecond, 3300 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("outages = %v, want %v", got, want)
	}
}
