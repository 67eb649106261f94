package imports

import (
	"encoding/json"
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

// save replaces the resume file atomically: write, sync, rename.
func (s state) save(path string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("import: resume file: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("import: resume file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("import: resume file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("import: resume file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("import: resume file: %w", err)
	}
	return nil
}
