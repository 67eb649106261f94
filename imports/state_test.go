package imports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// The resume file is replaced through a temporary file of each writer's
// own: two imports saving the same resume file at once (which failed on
// the rename of their shared temporary file) both succeed, and what is
// left is one whole state and no temporary file.
func TestResumeFileSavedConcurrently(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "in.rejects.csv.resume")
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if err := (state{Version: 1, Source: "crm", File: 0, Line: w*1000 + i}).save(path); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	var st state
	if err != nil || json.Unmarshal(b, &st) != nil || st.Source != "crm" {
		t.Fatalf("resume file %q, %v", b, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left in the directory: %v", entries)
	}
}
