//go:build !unix

package sqlite

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir marks the data directory as in use. Without flock, exclusivity
// rests on the operator not starting two servers on one directory.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: lock data directory: %w", err)
	}
	return f, nil
}
