//go:build !linux

package loadgen

import "errors"

// setFileSizeLimit needs prlimit(2), which only Linux has.
func setFileSizeLimit(pid int, n int64) error {
	return errors.New("loadgen: a full disk is simulated with prlimit(2), which needs Linux")
}
