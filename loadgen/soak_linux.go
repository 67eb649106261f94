package loadgen

import (
	"fmt"
	"syscall"
	"unsafe"
)

// setFileSizeLimit sets the soft RLIMIT_FSIZE of process pid to n bytes,
// or back to the hard limit for 0, with prlimit(2); no privilege is needed
// for either. Go ignores SIGXFSZ, so a write beyond the limit fails with
// EFBIG instead of killing the process.
func setFileSizeLimit(pid int, n int64) error {
	var lim syscall.Rlimit
	if err := prlimit(pid, nil, &lim); err != nil {
		return fmt.Errorf("loadgen: read the file size limit of process %d: %w", pid, err)
	}
	lim.Cur = lim.Max
	if n > 0 && uint64(n) < lim.Max {
		lim.Cur = uint64(n)
	}
	if err := prlimit(pid, &lim, nil); err != nil {
		return fmt.Errorf("loadgen: limit the file size of process %d: %w", pid, err)
	}
	return nil
}

func prlimit(pid int, set, old *syscall.Rlimit) error {
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), uintptr(syscall.RLIMIT_FSIZE),
		uintptr(unsafe.Pointer(set)), uintptr(unsafe.Pointer(old)), 0, 0); errno != 0 {
		return errno
	}
	return nil
}
