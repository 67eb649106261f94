//go:build !unix

package sqlite

// lockIfIdle cannot tell whether a server holds the directory without
// flock: the backup reads as if one did.
func lockIfIdle(dir string) (idle bool, unlock func(), err error) {
	return false, func() {}, nil
}
