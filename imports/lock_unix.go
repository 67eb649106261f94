//go:build unix

package imports

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile opens path (creating it) and takes an exclusive advisory lock
// on it, released when the file is closed or the process ends; ErrLocked
// (wrapped) when another process holds it.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, err
	}
	return f, nil
}
