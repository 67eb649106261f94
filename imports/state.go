package imports

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// state is what the resume file records after every batch: which inputs,
// with which mapping, into which source, and how far (every row up to Line
// of input File has been accounted for, and the rejects file had
// RejectsSize bytes then).
type state struct {
	Version     int          `json:"version"`
	Source      string       `json:"source"`
	Mapping     string       `json:"mapping"`
	Inputs      []inputState `json:"inputs"`
	File        int          `json:"file"`
	Line        int          `json:"line"`
	RejectsSize int64        `json:"rejectsSize"`
	Summary     Summary      `json:"summary"`
}

type inputState struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
}

func (r *Runner) freshState(inputs []Input) state {
	st := state{Version: 1, Source: r.Source, Mapping: r.Mapping.Hash()}
	for _, in := range inputs {
		abs, err := filepath.Abs(in.Name)
		if err != nil {
			abs = in.Name
		}
		st.Inputs = append(st.Inputs, inputState{Name: abs, Size: in.Size, ModTime: in.ModTime})
	}
	return st
}

// matches reports whether a saved state belongs to the same import: same
// source, mapping and inputs (path, size and modification time), and not
// already past the end.
func (s state) matches(fresh state) bool {
	if s.Version != fresh.Version || s.Source != fresh.Source || s.Mapping != fresh.Mapping || len(s.Inputs) != len(fresh.Inputs) {
		return false
	}
	for i := range s.Inputs {
		a, b := s.Inputs[i], fresh.Inputs[i]
		if a.Name != b.Name || a.Size != b.Size || !a.ModTime.Equal(b.ModTime) {
			return false
		}
	}
	return s.File >= 0 && s.File < len(s.Inputs)
}

func loadState(path string) (state, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return state{}, false
	}
	var s state
	if json.Unmarshal(b, &s) != nil {
		return state{}, false
	}
	return s, true
}

// save replaces the resume file atomically: write a temporary file of its
// own (so two writers never share one), sync, rename.
func (s state) save(path string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("import: resume file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("import: resume file: %w", err)
	}
	return nil
}

// ErrLocked is returned, wrapped with the file's name, when another import
// is running with the same rejects file or resume state.
var ErrLocked = errors.New("another import is running with this rejects file")

// lockPath is the file whose lock an import holds while it runs: its
// rejects file, or with none its resume file's ".lock" companion ("" for
// an import with neither, which has nothing on disk to share).
func (r *Runner) lockPath() string {
	switch {
	case r.RejectsPath != "":
		return r.RejectsPath
	case r.StatePath != "":
		return r.StatePath + ".lock"
	}
	return ""
}

// lock keeps a second import of the same files off this one's rejects
// file and resume state, which they would otherwise both write (two
// imports of one file from one directory name the same ones). The second
// is refused; run on its own, it would store nothing twice (message ids are
// deterministic) but the rejects file and the resume point would be
// garbled. The lock is released when the returned file is closed or the
// process ends, so a crash leaves nothing to clean up.
func (r *Runner) lock() (*os.File, error) {
	path := r.lockPath()
	if path == "" {
		return nil, nil
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
	}
	f, err := lockFile(path)
	if errors.Is(err, ErrLocked) {
		return nil, fmt.Errorf("import: another import is running with the rejects file and resume state %s (the same files, from the same directory?): wait for it to finish, or give this one a rejects file of its own: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("import: locking %s: %w", path, err)
	}
	return f, nil
}
