package sqlite_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/sqlite"
)

// The writer process of TestBackupWhileAnotherProcessWrites: when this
// variable names a data directory, TestBackupWriterProcess opens the store
// there, records a definition, a source, a token and predictions, prints
// "ready", then appends batches of backupBatch events until it is killed,
// printing the number of the last acknowledged batch after each commit.
const writerEnv = "KITH_TEST_BACKUP_WRITER_DIR"

const backupBatch = 50

func backupMessageID(b, j int) string { return fmt.Sprintf("bk-%05d-%02d", b, j) }

func TestBackupWriterProcess(t *testing.T) {
	dir := os.Getenv(writerEnv)
	if dir == "" {
		t.Skip("only runs as the writer process of TestBackupWhileAnotherProcessWrites")
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(2)
	}
	now := time.Now()
	must := func(err error) {
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
	}
	must(db.CreateSource(ctx, kith.Source{ID: "src_backup", Name: "backup", KeyHash: []byte("key-hash"), CreatedAt: now}))
	must(db.CreateToken(ctx, kith.Token{ID: "tok_backup", Name: "ops", Scopes: []string{"admin"}, Hash: []byte("token-hash"), CreatedAt: now}))
	must(db.SaveDefinition(ctx, kith.Definition{Kind: kith.KindAudience, Key: "buyers", Text: `count(event "Tick" within 30d) >= 1`,
		Condition: json.RawMessage(`{}`), Version: 1, CreatedAt: now, UpdatedAt: now}))
	must(db.SaveInsightRun(ctx, kith.InsightRun{ID: "run_backup", Status: kith.RunFinished, Trigger: "test", StartedAt: now, FinishedAt: now}))
	must(db.WriteInsights(ctx, "run_backup", now, []kith.ProfileInsights{{ProfileID: "p_backup", Traits: map[string]json.RawMessage{"churn_risk": json.RawMessage(`0.25`)}}}))
	fmt.Println("ready")
	for b := 0; ; b++ {
		var ms []kith.Message
		for j := 0; j < backupBatch; j++ {
			ms = append(ms, kith.Message{SourceID: "src_backup", MessageID: backupMessageID(b, j), Type: "track", Event: "Tick",
				UserID: fmt.Sprintf("u%03d", (b*backupBatch+j)%100), Timestamp: time.Now(), ReceivedAt: time.Now(),
				Raw: []byte(`{"type":"track","event":"Tick"}`)})
		}
		if _, err := db.Append(ctx, kith.AppendBatch{Events: ms}); err != nil {
			fmt.Println("error:", err)
			os.Exit(2)
		}
		fmt.Println("acked", b)
	}
}

// writer is the writer process, with the number of batches it has
// acknowledged so far.
type writer struct {
	cmd   *exec.Cmd
	acked chan int // each acknowledged batch number, in order
	ready chan struct{}
	last  int // the last batch number received from acked
}

func startWriter(t *testing.T, dir string) *writer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBackupWriterProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), writerEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &writer{cmd: cmd, acked: make(chan int, 1<<16), ready: make(chan struct{}), last: -1}
	go func() {
		defer close(w.acked)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "ready":
				close(w.ready)
			case strings.HasPrefix(line, "acked "):
				n, _ := strconv.Atoi(strings.TrimPrefix(line, "acked "))
				w.acked <- n
			case strings.HasPrefix(line, "error:"):
				t.Errorf("writer process: %s", line)
			}
		}
	}()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		w.cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("writer stderr:\n%s", stderr.String())
		}
	})
	select {
	case <-w.ready:
	case <-time.After(30 * time.Second):
		t.Fatal("the writer process did not become ready")
	}
	return w
}

// drain takes the acknowledgements received so far, and waits for at
// least min of them in total.
func (w *writer) drain(t *testing.T, min int) int {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case n, ok := <-w.acked:
			if !ok {
				t.Fatalf("the writer process stopped after batch %d", w.last)
			}
			w.last = n
			continue
		default:
		}
		if w.last+1 >= min {
			return w.last + 1
		}
		select {
		case n, ok := <-w.acked:
			if !ok {
				t.Fatalf("the writer process stopped after batch %d", w.last)
			}
			w.last = n
		case <-deadline:
			t.Fatalf("only %d batches acknowledged, want %d", w.last+1, min)
		}
	}
}

// logIDs reads every event of a restored store and counts each messageId.
func logIDs(t *testing.T, db kith.Store) (map[string]int, int64) {
	t.Helper()
	seen := map[string]int{}
	var after, last int64
	for {
		ms, err := db.ReadLog(context.Background(), after, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			return seen, last
		}
		for _, m := range ms {
			seen[m.MessageID]++
			last = m.Seq
		}
		after = ms[len(ms)-1].Seq
	}
}

// backupTo writes a backup of dir to a file and returns its path and
// manifest.
func backupTo(t *testing.T, dir string, gz bool) (string, sqlite.Manifest) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kith.backup")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sqlite.Backup(context.Background(), dir, f, sqlite.BackupOptions{TempDir: t.TempDir(), Gzip: gz})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, m
}

func restoreFrom(t *testing.T, path, dir string, opts sqlite.RestoreOptions) (sqlite.Manifest, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return sqlite.Restore(context.Background(), f, dir, opts)
}

// checkRestored opens a restored store and checks that every batch below
// ackedBefore is there exactly once, that the log ends where the manifest
// says, and that what cannot be derived from the log came back.
func checkRestored(t *testing.T, dir string, m sqlite.Manifest, ackedBefore int) {
	t.Helper()
	ctx := context.Background()
	db := open(t, dir)
	defer db.Close()
	seen, last := logIDs(t, db)
	for b := 0; b < ackedBefore; b++ {
		for j := 0; j < backupBatch; j++ {
			if n := seen[backupMessageID(b, j)]; n != 1 {
				t.Fatalf("event %s, acknowledged before the backup began: %d times in the restored log, want 1", backupMessageID(b, j), n)
			}
		}
	}
	var total int
	for id, n := range seen {
		total += n
		if n != 1 {
			t.Errorf("event %s: %d times in the restored log", id, n)
		}
	}
	if int64(total) != m.LogEvents || last != m.LogLastSeq {
		t.Errorf("restored log: %d events up to %d, manifest says %d up to %d", total, last, m.LogEvents, m.LogLastSeq)
	}
	if cur, err := db.IndexCursor(ctx); err != nil || cur != 0 {
		t.Errorf("the derived state was restored (index cursor %d, %v); it must be rebuilt from the log", cur, err)
	}
	if defs, err := db.Definitions(ctx); err != nil || len(defs) != 1 || defs[0].Key != "buyers" {
		t.Errorf("definitions after the restore: %+v, %v", defs, err)
	}
	if run, err := db.InsightRun(ctx, "run_backup"); err != nil || run.Status != kith.RunFinished {
		t.Errorf("insight run after the restore: %+v, %v", run, err)
	}
	if srcs, err := db.Sources(ctx); err != nil || len(srcs) != 1 || srcs[0].ID != "src_backup" {
		t.Errorf("sources after the restore: %+v, %v", srcs, err)
	}
	if tok, err := db.TokenByHash(ctx, []byte("token-hash")); err != nil || tok.ID != "tok_backup" {
		t.Errorf("token after the restore: %+v, %v", tok, err)
	}
	counts, err := db.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := counts["src_backup"]; c.Accepted != int64(total) {
		t.Errorf("restored counters: accepted %d, the log holds %d", c.Accepted, total)
	}
	// A new event takes the next position: none the copied files saw.
	r, err := db.Append(ctx, kith.AppendBatch{Events: []kith.Message{{SourceID: "src_backup", MessageID: "after-restore", Type: "track", Event: "Tick",
		UserID: "u1", Timestamp: time.Now(), ReceivedAt: time.Now(), Raw: []byte(`{}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	if head, _ := db.LogHead(ctx); head != m.LogLastSeq+1 || (r.Seqs != nil && r.Seqs[0] != m.LogLastSeq+1) {
		t.Errorf("first event after the restore at %d, want %d", head, m.LogLastSeq+1)
	}
	// The restored messageIds are deduplicated.
	r, err = db.Append(ctx, kith.AppendBatch{Events: []kith.Message{{SourceID: "src_backup", MessageID: backupMessageID(0, 0), Type: "track", Event: "Tick",
		UserID: "u1", Timestamp: time.Now(), ReceivedAt: time.Now(), Raw: []byte(`{}`)}}})
	if err != nil || !r.Duplicate[0] {
		t.Errorf("a restored messageId sent again was not a duplicate: %+v, %v", r, err)
	}
}

// TestBackupWhileAnotherProcessWrites backs up a store while another
// process (holding the directory's lock, as kith serve does) appends to
// it, restores the backup, and checks that every event acknowledged before
// the backup began is in it exactly once, along with the definitions,
// predictions, sources and tokens. The writer is then killed and the
// crashed directory, its write-ahead logs not checkpointed, is backed up
// and restored too.
func TestBackupWhileAnotherProcessWrites(t *testing.T) {
	dir := t.TempDir()
	w := startWriter(t, dir)
	w.drain(t, 20)

	// The directory is locked by the writer: a store cannot open it, and
	// a restore into it is refused; a backup is not.
	if db, err := sqlite.Open(context.Background(), dir, sqlite.Options{}); err == nil {
		db.Close()
		t.Fatal("a second store opened the writer's directory")
	}
	before := w.drain(t, 0)
	path, m := backupTo(t, dir, true)
	during := w.drain(t, 0)
	w.drain(t, during+10) // still appending after the backup
	t.Logf("backup: %d events up to position %d, %d batches acknowledged before it began, %d when it ended", m.LogEvents, m.LogLastSeq, before, during)
	if m.LogEvents < int64(before*backupBatch) {
		t.Fatalf("the backup holds %d events, %d were acknowledged before it began", m.LogEvents, before*backupBatch)
	}
	if _, err := restoreFrom(t, path, dir, sqlite.RestoreOptions{Force: true}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("restore into a directory in use: %v, want a refusal", err)
	}
	restored := filepath.Join(t.TempDir(), "restored")
	rm, err := restoreFrom(t, path, restored, sqlite.RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rm.LogLastSeq != m.LogLastSeq {
		t.Fatalf("restore read manifest %+v, backup wrote %+v", rm, m)
	}
	checkRestored(t, restored, m, before)

	// Crash the writer: what it acknowledged is in its log and WAL.
	w.cmd.Process.Kill()
	w.cmd.Wait()
	for n := range w.acked {
		w.last = n
	}
	crashed := w.last + 1
	path, m = backupTo(t, dir, false)
	restored = filepath.Join(t.TempDir(), "restored-after-crash")
	if _, err := restoreFrom(t, path, restored, sqlite.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, restored, m, crashed)
	t.Logf("after the crash: %d batches acknowledged, the backup holds %d events", crashed, m.LogEvents)
}

// TestBackupOfClosedStore backs up a store closed cleanly (no write-ahead
// log left) and checks that the backup created or changed no file in its
// directory, and that a server cannot take the directory while the backup
// holds it.
func TestBackupOfClosedStore(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir)
	ctx := context.Background()
	if _, err := db.Append(ctx, kith.AppendBatch{Events: []kith.Message{{SourceID: "s", MessageID: "m1", Type: "track", Event: "e",
		UserID: "u", Timestamp: time.Now(), ReceivedAt: time.Now(), Raw: []byte(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	contents := func() map[string]string {
		m := map[string]string{}
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = string(b)
		}
		return m
	}
	before := contents()
	// While the backup writes its output, the directory is locked.
	var locked error
	out := writerFunc(func(p []byte) (int, error) {
		if locked == nil {
			if db, err := sqlite.Open(ctx, dir, sqlite.Options{}); err == nil {
				db.Close()
				locked = fmt.Errorf("a store opened the directory during its backup")
			} else {
				locked = err
			}
		}
		return len(p), nil
	})
	if _, err := sqlite.Backup(ctx, dir, out, sqlite.BackupOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if locked == nil || !strings.Contains(locked.Error(), "in use") {
		t.Errorf("opening the directory during its backup: %v, want it refused as in use", locked)
	}
	after := contents()
	if len(after) != len(before) {
		t.Errorf("the backup changed the directory's files: %d files, was %d", len(after), len(before))
	}
	for name := range before {
		if before[name] != after[name] {
			t.Errorf("the backup changed %s", name)
		}
	}
	path, m := backupTo(t, dir, false)
	if m.LogEvents != 1 || m.LogLastSeq != 1 || len(m.Files) != 3 || m.Rebuilt[0] != "state.db" {
		t.Errorf("manifest: %+v", m)
	}
	restored := t.TempDir()
	if _, err := restoreFrom(t, path, restored, sqlite.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	r := open(t, restored)
	defer r.Close()
	if seen, _ := logIDs(t, r); seen["m1"] != 1 {
		t.Errorf("restored log: %v", seen)
	}
}

// TestRestoreRefuses checks what restore will not do: overwrite a store
// without Force, accept a damaged or foreign file, or touch the data
// directory when the backup fails its checks; and that with Force it
// replaces the store, the old derived state included.
func TestRestoreRefuses(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	db := open(t, src)
	if _, err := db.Append(ctx, kith.AppendBatch{Events: []kith.Message{{SourceID: "s", MessageID: "from-backup", Type: "track", Event: "e",
		UserID: "u", Timestamp: time.Now(), ReceivedAt: time.Now(), Raw: []byte(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	path, _ := backupTo(t, src, false)

	// An existing store with its own events and derived state.
	target := t.TempDir()
	old := open(t, target)
	if _, err := old.Append(ctx, kith.AppendBatch{Events: []kith.Message{{SourceID: "s", MessageID: "old-1", Type: "track", Event: "e",
		UserID: "u", Timestamp: time.Now(), ReceivedAt: time.Now(), Raw: []byte(`{}`)}, {SourceID: "s", MessageID: "old-2", Type: "track", Event: "e",
		UserID: "u", Timestamp: time.Now(), ReceivedAt: time.Now(), Raw: []byte(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	if err := old.ApplyIndexBatch(ctx, 0, kith.IndexBatch{Cursor: 2}); err != nil {
		t.Fatal(err)
	}
	old.Close()
	if _, err := restoreFrom(t, path, target, sqlite.RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore over a store without force: %v", err)
	}

	// A damaged backup: one byte of the log's copy changed.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("SQLite format 3")) // the start of the first file's copy
	if i < 0 {
		t.Fatal("no database file in the backup")
	}
	damaged := bytes.Clone(data)
	damaged[i+1000] ^= 0xff
	bad := filepath.Join(t.TempDir(), "damaged.backup")
	os.WriteFile(bad, damaged, 0o600)
	if _, err := restoreFrom(t, bad, target, sqlite.RestoreOptions{Force: true}); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("restore of a damaged backup: %v", err)
	}
	foreign := filepath.Join(t.TempDir(), "foreign")
	os.WriteFile(foreign, []byte("hello, not a tar"), 0o600)
	if _, err := restoreFrom(t, foreign, target, sqlite.RestoreOptions{Force: true}); err == nil || !strings.Contains(err.Error(), "not a Kith backup") {
		t.Fatalf("restore of a foreign file: %v", err)
	}
	truncated := filepath.Join(t.TempDir(), "truncated")
	os.WriteFile(truncated, data[:len(data)/2], 0o600)
	if _, err := restoreFrom(t, truncated, target, sqlite.RestoreOptions{Force: true}); err == nil {
		t.Fatal("restore of a truncated backup succeeded")
	}
	// None of that touched the old store.
	old = open(t, target)
	if seen, _ := logIDs(t, old); seen["old-1"] != 1 || seen["from-backup"] != 0 {
		t.Fatalf("a refused restore changed the store: %v", seen)
	}
	old.Close()

	if _, err := restoreFrom(t, path, target, sqlite.RestoreOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	r := open(t, target)
	defer r.Close()
	if seen, _ := logIDs(t, r); seen["from-backup"] != 1 || seen["old-1"] != 0 {
		t.Fatalf("after a forced restore the log holds %v", seen)
	}
	if cur, err := r.IndexCursor(ctx); err != nil || cur != 0 {
		t.Fatalf("after a forced restore the old derived state survived (cursor %d, %v)", cur, err)
	}
	entries, _ := os.ReadDir(target)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".kith-restore-") {
			t.Errorf("restore left %s behind", e.Name())
		}
	}
}

// writerFunc is an io.Writer from a function.
type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
