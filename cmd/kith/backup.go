package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kithcdp/kith/sqlite"
)

const backupUsage = `usage: kith backup --out FILE [--data DIR] [--gzip] [--tmp DIR] [--json]

Writes a consistent backup of the embedded store in DIR to FILE (- for
standard output), while the server runs or not. The backup is one tar file:
manifest.json (format version, time, the log's last position), then copies
of log.db (events, sources, tokens, the hashing secret, identity decisions),
insights.db and audiences.db. The derived state (state.db: profiles,
identity graph, timelines) is not copied: the server rebuilds it from the
log at its first start after a restore.

It reads the files through SQLite read-only, so it never blocks a running
server and takes no lock on the directory; with the server stopped, it
holds the directory's lock while it runs and creates no file there. The
copies are made in --tmp first (they need as much space as the data
directory's databases).

Flags:
`

const restoreUsage = `usage: kith restore --in FILE [--data DIR] [--force]

Restores a backup made by kith backup (FILE, or - for standard input;
gzipped or not) into the data directory DIR. The server must be stopped:
restore refuses while a server holds DIR. It refuses a directory that is not
empty unless --force, which replaces the store's files there (and only
those). Every file is checked against the manifest's SHA-256 digests and for
integrity before anything in DIR changes. Then start the server on DIR: it
rebuilds the derived state (profiles) from the log before it serves them.

Flags:
`

// runBackup implements `kith backup`.
func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), backupUsage)
		fs.PrintDefaults()
	}
	dir := fs.String("data", envOr("KITH_DATA", "./kith-data"), "data directory of the embedded store (env KITH_DATA)")
	out := fs.String("out", "", "backup file to write, - for standard output (required; an existing file is not overwritten)")
	gz := fs.Bool("gzip", false, "gzip the backup (the default when FILE ends in .gz or .tgz)")
	tmp := fs.String("tmp", "", "directory for the copies while the backup is made (default: FILE's directory, or the system's temporary directory for -)")
	asJSON := fs.Bool("json", false, "print the manifest as JSON instead of a summary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("kith backup: unexpected argument %q (%s)", fs.Arg(0), strings.SplitN(backupUsage, "\n", 2)[0])
	}
	if *out == "" {
		return fmt.Errorf("kith backup: --out FILE is required (- for standard output)")
	}
	setGzip := false
	fs.Visit(func(f *flag.Flag) { setGzip = setGzip || f.Name == "gzip" })
	if !setGzip && (strings.HasSuffix(*out, ".gz") || strings.HasSuffix(*out, ".tgz")) {
		*gz = true
	}
	report := stdout
	var w io.Writer
	var finish func() error
	abort := func() {}
	if *out == "-" {
		// The backup goes to standard output: what is said goes to
		// standard error.
		w, finish, report = stdout, func() error { return nil }, stderr
	} else {
		if _, err := os.Stat(*out); err == nil {
			return fmt.Errorf("kith backup: %s exists; choose another name or remove it first", *out)
		}
		if *tmp == "" {
			*tmp = filepath.Dir(*out)
		}
		// Written under another name and renamed when complete, so FILE
		// is never a partial backup.
		partial := *out + ".partial"
		f, err := os.OpenFile(partial, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("kith backup: %w", err)
		}
		w = f
		abort = func() { f.Close(); os.Remove(partial) }
		finish = func() error {
			if err := f.Sync(); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			return os.Rename(partial, *out)
		}
	}
	start := time.Now()
	m, err := sqlite.Backup(ctx, *dir, w, sqlite.BackupOptions{TempDir: *tmp, Gzip: *gz})
	if err != nil {
		abort()
		return err
	}
	if err := finish(); err != nil {
		abort()
		return fmt.Errorf("kith backup: write %s: %w", *out, err)
	}
	if *asJSON {
		return printManifest(report, m)
	}
	dest := *out
	if dest == "-" {
		dest = "standard output"
	}
	fmt.Fprintf(report, "backup of %s written to %s in %s\n", *dir, dest, time.Since(start).Round(time.Millisecond))
	describeManifest(report, m)
	return nil
}

// runRestore implements `kith restore`.
func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kith restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), restoreUsage)
		fs.PrintDefaults()
	}
	dir := fs.String("data", envOr("KITH_DATA", "./kith-data"), "data directory to restore into (env KITH_DATA)")
	in := fs.String("in", "", "backup file to restore, - for standard input (required)")
	force := fs.Bool("force", false, "replace the store in a data directory that holds one")
	asJSON := fs.Bool("json", false, "print the manifest as JSON instead of a summary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("kith restore: unexpected argument %q (%s)", fs.Arg(0), strings.SplitN(restoreUsage, "\n", 2)[0])
	}
	if *in == "" {
		return fmt.Errorf("kith restore: --in FILE is required (- for standard input)")
	}
	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return fmt.Errorf("kith restore: %w", err)
		}
		defer f.Close()
		r = f
	}
	m, err := sqlite.Restore(ctx, r, *dir, sqlite.RestoreOptions{Force: *force})
	if err != nil {
		return err
	}
	if *asJSON {
		return printManifest(stdout, m)
	}
	fmt.Fprintf(stdout, "restored %s into %s\n", *in, *dir)
	describeManifest(stdout, m)
	fmt.Fprintf(stdout, "start the server on %s: it rebuilds %s from the log before serving profiles\n", *dir, strings.Join(m.Rebuilt, ", "))
	return nil
}

func printManifest(w io.Writer, m sqlite.Manifest) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("print the manifest: %w", err)
	}
	return nil
}

// describeManifest prints what a backup holds, one fact a line.
func describeManifest(w io.Writer, m sqlite.Manifest) {
	fmt.Fprintf(w, "taken at:    %s\n", m.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(w, "log:         %d events, last position %d\n", m.LogEvents, m.LogLastSeq)
	for _, f := range m.Files {
		fmt.Fprintf(w, "file:        %-13s %12d bytes  sha256 %s\n", f.Name, f.Size, f.SHA256)
	}
	fmt.Fprintf(w, "not copied:  %s (rebuilt from the log)\n", strings.Join(m.Rebuilt, ", "))
}
