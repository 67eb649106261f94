//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockIfIdle takes the data directory's lock if no server holds it,
// without creating the lock file or opening it for writing (so a backup
// run by another user leaves nothing behind). idle reports whether it did;
// unlock releases it.
func lockIfIdle(dir string) (idle bool, unlock func(), err error) {
	f, err := os.Open(filepath.Join(dir, "LOCK"))
	if errors.Is(err, os.ErrNotExist) {
		return false, func() {}, nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("open the directory's lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, func() {}, nil // a server runs
		}
		return false, nil, fmt.Errorf("lock the directory: %w", err)
	}
	return true, func() { f.Close() }, nil
}
