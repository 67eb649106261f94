//go:build unix

package imports

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// blockingSink holds its first Send until released.
type blockingSink struct {
	logSink
	entered, release chan struct{}
}

func (b *blockingSink) Send(ctx context.Context, msgs []json.RawMessage, rejected map[string]int64) ([]Outcome, error) {
	select {
	case b.entered <- struct{}{}:
		<-b.release
	default:
	}
	return b.logSink.Send(ctx, msgs, rejected)
}

// Two imports of the same file from one directory share a rejects file
// and a resume file: while one runs, the other is refused, naming them,
// and touches neither; once the first is done, it runs (storing nothing
// twice). Imports with rejects files of their own run side by side.
func TestConcurrentImportsOfOneFile(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "contacts.csv")
	os.WriteFile(input, []byte("id\nu1\nu2\n\nu3\n,\n"), 0o644)
	in, _ := FileInput(input)
	m, _ := ParseMapping([]byte("type: identify\nkey: [id]\nfields: {userId: id}\n"))
	rejects := filepath.Join(dir, "contacts.rejects.csv")
	log := &memLog{}
	runner := func(sink Sink, rejects string) *Runner {
		return &Runner{Source: "crm", Mapping: m, Sink: sink, RejectsPath: rejects, StatePath: rejects + ".resume", BatchSize: 1, Concurrency: 1}
	}
	first := &blockingSink{logSink: logSink{log: log}, entered: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error)
	var firstSum Summary
	go func() {
		var err error
		firstSum, err = runner(first, rejects).Run(context.Background(), []Input{in})
		done <- err
	}()
	<-first.entered // the first import is under way, its resume state saved or not yet

	_, err := runner(&logSink{log: log}, rejects).Run(context.Background(), []Input{in})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), rejects) {
		t.Fatalf("a second import of the same file: %v, want it refused naming %s", err, rejects)
	}
	// Beside it, an import with its own rejects file runs.
	other, err := runner(&logSink{log: log}, filepath.Join(dir, "other.rejects.csv")).Run(context.Background(), []Input{in})
	if err != nil || other.Read != 4 {
		t.Fatalf("an import with its own rejects file: %+v, %v", other, err)
	}

	close(first.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if firstSum.Read != 4 || firstSum.Rejected != 1 {
		t.Fatalf("first import %+v", firstSum)
	}
	if got := readRejects(t, rejects); len(got) != 1 || got[0] != (wantReject{6, ReasonMalformedRow}) {
		t.Fatalf("rejects %v", got)
	}
	if _, err := os.Stat(rejects + ".resume"); !os.IsNotExist(err) {
		t.Fatalf("resume file left behind: %v", err)
	}
	again, err := runner(&logSink{log: log}, rejects).Run(context.Background(), []Input{in})
	if err != nil || again.Duplicates != 3 || len(log.stored) != 3 {
		t.Fatalf("again: %+v, %v, %d stored", again, err, len(log.stored))
	}
}
