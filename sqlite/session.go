package sqlite

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// The derived state (state.db) runs with synchronous=OFF where the
// operating system's boot id can be read: SQLite then never waits for an
// fsync of it, which keeps the log's fsyncs — the ack path — from queueing
// behind the state's checkpoints (it halved the ack p99 at half load in
// BENCHMARKS.md). A process crash loses nothing under OFF (the writes are in
// the kernel); only an operating-system crash or power cut can leave
// state.db inconsistent. That is detected here: state.session records the
// boot the store was opened in and whether it was closed cleanly; a store
// last opened in another boot and never closed is discarded and rebuilt
// from the durable log, which reproduces it exactly (profile ids derive
// from log positions). Without a boot id, state.db runs with
// synchronous=NORMAL, which survives power cuts on its own.

const sessionFile = "state.session"

// bootID identifies the running operating-system boot, or "" if unknown.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// stateFiles are the files that make up state.db.
var stateFiles = []string{"state.db", "state.db-wal", "state.db-shm"}

// openSession decides state.db's synchronous level, discards a state that
// may have been torn by an OS crash, and records this session as open.
func openSession(dir string) (synchronous string, err error) {
	boot := bootID()
	if boot == "" {
		return "NORMAL", nil
	}
	path := filepath.Join(dir, sessionFile)
	prev, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("sqlite: read %s: %w", sessionFile, err)
	}
	if state, lastBoot, ok := strings.Cut(strings.TrimSpace(string(prev)), " "); ok && state == "open" && lastBoot != boot {
		slog.Warn("the derived state was open when the machine last stopped; rebuilding it from the log", "dir", dir)
		for _, f := range stateFiles {
			if err := os.Remove(filepath.Join(dir, f)); err != nil && !os.IsNotExist(err) {
				return "", fmt.Errorf("sqlite: discard %s: %w", f, err)
			}
		}
	}
	if err := writeSynced(path, "open "+boot+"\n"); err != nil {
		return "", err
	}
	return "OFF", nil
}

// closeSession makes state.db durable and records a clean close.
func closeSession(dir string) error {
	if bootID() == "" {
		return nil
	}
	for _, f := range stateFiles[:2] {
		if err := syncFile(filepath.Join(dir, f)); err != nil {
			return err
		}
	}
	return writeSynced(filepath.Join(dir, sessionFile), "closed "+bootID()+"\n")
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("sqlite: sync %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sqlite: sync %s: %w", filepath.Base(path), err)
	}
	return nil
}

// writeSynced replaces path's content durably (write, fsync, rename, fsync
// the directory).
func writeSynced(path, content string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: write %s: %w", filepath.Base(path), err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("sqlite: write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sqlite: write %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("sqlite: write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sqlite: write %s: %w", filepath.Base(path), err)
	}
	return syncFile(filepath.Dir(path))
}
