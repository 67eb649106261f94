//go:build !unix

package imports

import "os"

// lockFile opens path (creating it). Without flock it takes no lock:
// exclusivity rests on the user not running the same import twice at
// once (the resume file is still replaced safely, through a temporary
// file of its own).
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
}
