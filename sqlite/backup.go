package sqlite

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	msqlite "modernc.org/sqlite"
)

// A backup of the embedded store is one tar stream (optionally gzipped):
// manifest.json first, then a copy of log.db, insights.db and audiences.db.
//
// What it holds. log.db is the source of truth: events, counters, sources,
// tokens, the identifier-hashing secret and the identity decisions.
// insights.db (insight runs and predicted traits) and audiences.db
// (audience and computed-trait definitions, memberships and their history)
// cannot be derived from the log, so they are copied too. state.db is not:
// it is derived from the log alone, and a copy of it could not be made
// consistent with the log's copy (an unmerge or an erasure changes both
// files, not atomically), so the first start after a restore rebuilds it
// from the log, as it does after an operating-system crash. Profile ids
// derive from log positions, so the rebuild gives every profile the id the
// insights and audiences refer to.
//
// How it is consistent while the server runs. The files are SQLite
// databases in WAL mode, which lets a reader in another process see a
// consistent snapshot of a file while the server writes it; the backup
// opens each file read-only and leaves the data directory's LOCK to the
// server (that lock keeps a second server off the directory; SQLite's own
// file locks, which are separate, are what coordinate readers and the
// writer). With no server running, the backup holds the LOCK instead (see
// Backup).
// The read snapshots of the three files are taken one after the other in
// microseconds, audiences.db and insights.db before log.db, and held while
// the files are copied page by page (SQLite's online backup API, which
// copies under the reader's snapshot). Taking the log last means every log
// position the other files refer to (the audience engine's cursor, the
// profiles the predictions are keyed by) is inside the copied log: after a
// restore, the audience engine reads what it had not applied from the log,
// and new events get positions no copied file has seen. The copied log
// holds every event acknowledged before the backup started, since an
// acknowledgement follows the commit.

// BackupFormat names the format in a backup's manifest.
const BackupFormat = "kith-backup"

// BackupVersion is the version of the backup format this code writes; it
// restores backups of this version and older.
const BackupVersion = 1

// manifestName is the name of the manifest inside a backup.
const manifestName = "manifest.json"

// backupFiles are the files a backup holds, in the order their read
// snapshots are taken: the log last (see above).
var backupFiles = []string{"audiences.db", "insights.db", "log.db"}

// schemaVersions are the schema versions (PRAGMA user_version) this code
// knows for each file a backup holds.
var schemaVersions = map[string]int{
	"log.db":       len(logMigrations),
	"insights.db":  len(insightMigrations),
	"audiences.db": len(audienceMigrations),
}

// Manifest describes a backup.
type Manifest struct {
	// Format is BackupFormat; Version the backup format's version.
	Format  string `json:"format"`
	Version int    `json:"version"`
	// CreatedAt is when the snapshots were taken.
	CreatedAt time.Time `json:"createdAt"`
	// LogLastSeq is the log position of the last event appended before
	// the log's snapshot (the events table's sequence, which a deletion
	// does not lower): the first event after a restore gets the next one.
	LogLastSeq int64 `json:"logLastSeq"`
	// LogEvents is the number of events in the copied log.
	LogEvents int64 `json:"logEvents"`
	// Files are the copied database files in the order they appear in
	// the backup.
	Files []ManifestFile `json:"files"`
	// Rebuilt names the files a restore leaves out, for the server to
	// rebuild from the log at its first start.
	Rebuilt []string `json:"rebuilt"`
}

// ManifestFile describes one database file of a backup.
type ManifestFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// SHA256 is the hex SHA-256 digest of the file's content.
	SHA256 string `json:"sha256"`
	// SchemaVersion is the file's PRAGMA user_version.
	SchemaVersion int `json:"schemaVersion"`
}

// Bytes is the total size of the backup's database files.
func (m Manifest) Bytes() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// BackupOptions tune Backup.
type BackupOptions struct {
	// TempDir is where the copies are made before they are written out
	// (they need as much space as the backup, uncompressed); "" means the
	// system's temporary directory.
	TempDir string
	// Gzip compresses the stream.
	Gzip bool
}

// Backup writes a consistent backup of the embedded store in dir to w. It
// may run while a server is using dir, from another process: it then
// takes no lock on the directory and writes nothing into it. When no
// server holds dir, Backup holds its lock while it runs (a server started
// meanwhile refuses to start) and reads each file without a write-ahead
// log as immutable, so that it creates no file there either: a reader of
// a WAL database otherwise creates its -wal and -shm files, which, made
// by another user (a backup run as root), would keep the server out.
func Backup(ctx context.Context, dir string, w io.Writer, opts BackupOptions) (Manifest, error) {
	for _, name := range backupFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return Manifest{}, fmt.Errorf("sqlite: backup: %s has no %s: is it a Kith data directory (kith serve --data)?", dir, name)
			}
			return Manifest{}, fmt.Errorf("sqlite: backup: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(opts.TempDir, "kith-backup-")
	if err != nil {
		return Manifest{}, fmt.Errorf("sqlite: backup: temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	idle, unlock, err := lockIfIdle(dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("sqlite: backup: %w", err)
	}
	defer unlock()

	m := Manifest{Format: BackupFormat, Version: BackupVersion, Rebuilt: []string{"state.db"}}
	// Hold a read snapshot of every file, the log last, before copying
	// any of them.
	snaps := make(map[string]*snapshot, len(backupFiles))
	defer func() {
		for _, s := range snaps {
			s.close()
		}
	}()
	for _, name := range backupFiles {
		path := filepath.Join(dir, name)
		immutable := false
		if idle {
			st, err := os.Stat(path + "-wal")
			immutable = errors.Is(err, os.ErrNotExist) || (err == nil && st.Size() == 0)
		}
		s, err := openSnapshot(ctx, path, immutable)
		if err != nil {
			return Manifest{}, err
		}
		snaps[name] = s
	}
	m.CreatedAt = time.Now().UTC()
	logSnap := snaps["log.db"]
	if err := logSnap.conn.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), (SELECT count(*) FROM events)`).Scan(&m.LogLastSeq, &m.LogEvents); err != nil {
		return Manifest{}, fmt.Errorf("sqlite: backup: read the log's position: %w", err)
	}
	// Copy the log first: it is what matters most.
	for _, name := range []string{"log.db", "insights.db", "audiences.db"} {
		s := snaps[name]
		dst := filepath.Join(tmp, name)
		if err := s.copyTo(ctx, dst); err != nil {
			return Manifest{}, err
		}
		s.close()
		delete(snaps, name)
		f, err := checkCopy(ctx, dst)
		if err != nil {
			return Manifest{}, fmt.Errorf("sqlite: backup: the copy of %s: %w", name, err)
		}
		if f.SchemaVersion > schemaVersions[name] {
			return Manifest{}, fmt.Errorf("sqlite: backup: %s has schema version %d, newer than this kith knows (%d): use the kith that serves it", name, f.SchemaVersion, schemaVersions[name])
		}
		m.Files = append(m.Files, f)
	}
	if err := writeArchive(w, tmp, m, opts.Gzip); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// snapshot is a read transaction held on one database file.
type snapshot struct {
	name string
	db   *sql.DB
	conn *sql.Conn
}

// openSnapshot opens path read-only and starts a read transaction on it,
// which fixes what the connection sees until it ends. immutable says
// nothing writes the file meanwhile and it has no write-ahead log to read:
// SQLite then takes no lock and creates no file beside it.
func openSnapshot(ctx context.Context, path string, immutable bool) (*snapshot, error) {
	name := filepath.Base(path)
	q := url.Values{}
	q.Set("mode", "ro")
	if immutable {
		q.Set("immutable", "1")
	}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: backup: open %s: %w", name, err)
	}
	db.SetMaxOpenConns(1)
	s := &snapshot{name: name, db: db}
	if s.conn, err = db.Conn(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: backup: open %s: %w", name, err)
	}
	if _, err := s.conn.ExecContext(ctx, `BEGIN`); err != nil {
		s.close()
		return nil, fmt.Errorf("sqlite: backup: begin reading %s: %w", name, err)
	}
	// The snapshot is taken at the transaction's first read.
	var n int
	if err := s.conn.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&n); err != nil {
		s.close()
		return nil, fmt.Errorf("sqlite: backup: read %s: %w", name, err)
	}
	return s, nil
}

// copyTo copies every page of the snapshot to a new database file at dst,
// in one step, so the whole copy is of the snapshot the transaction holds.
func (s *snapshot) copyTo(ctx context.Context, dst string) error {
	err := s.conn.Raw(func(dc any) error {
		b, ok := dc.(interface {
			NewBackup(string) (*msqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("the SQLite driver has no online backup")
		}
		bk, err := b.NewBackup(dst)
		if err != nil {
			return err
		}
		if _, err := bk.Step(-1); err != nil {
			bk.Finish()
			return err
		}
		return bk.Finish()
	})
	if err != nil {
		return fmt.Errorf("sqlite: backup: copy %s: %w", s.name, err)
	}
	return ctx.Err()
}

func (s *snapshot) close() {
	if s.conn != nil {
		s.conn.ExecContext(context.Background(), `ROLLBACK`)
		s.conn.Close()
		s.conn = nil
	}
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
}

// checkCopy checks a copied (or restored) database file's integrity and
// describes it. The file is opened as immutable: nothing is written next
// to it, so its digest is that of the file as it stands.
func checkCopy(ctx context.Context, path string) (ManifestFile, error) {
	f := ManifestFile{Name: filepath.Base(path)}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return f, err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA quick_check`).Scan(&res); err != nil {
		return f, fmt.Errorf("integrity check: %w", err)
	}
	if res != "ok" {
		return f, fmt.Errorf("integrity check failed: %s", res)
	}
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&f.SchemaVersion); err != nil {
		return f, fmt.Errorf("read schema version: %w", err)
	}
	if err := db.Close(); err != nil {
		return f, err
	}
	if f.Size, f.SHA256, err = digest(path); err != nil {
		return f, err
	}
	return f, nil
}

// digest is a file's size and hex SHA-256.
func digest(path string) (int64, string, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer file.Close()
	h := sha256.New()
	n, err := io.Copy(h, file)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", filepath.Base(path), err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// writeArchive writes the manifest and the files of m from dir as a tar
// stream to w.
func writeArchive(w io.Writer, dir string, m Manifest, gz bool) error {
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(w)
		w = zw
	}
	tw := tar.NewWriter(w)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("sqlite: backup: manifest: %w", err)
	}
	mb = append(mb, '\n')
	if err := tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o600, Size: int64(len(mb)), ModTime: m.CreatedAt, Format: tar.FormatPAX}); err != nil {
		return fmt.Errorf("sqlite: backup: write: %w", err)
	}
	if _, err := tw.Write(mb); err != nil {
		return fmt.Errorf("sqlite: backup: write: %w", err)
	}
	for _, f := range m.Files {
		if err := tw.WriteHeader(&tar.Header{Name: f.Name, Mode: 0o600, Size: f.Size, ModTime: m.CreatedAt, Format: tar.FormatPAX}); err != nil {
			return fmt.Errorf("sqlite: backup: write: %w", err)
		}
		src, err := os.Open(filepath.Join(dir, f.Name))
		if err != nil {
			return fmt.Errorf("sqlite: backup: %w", err)
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return fmt.Errorf("sqlite: backup: write %s: %w", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("sqlite: backup: write: %w", err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fmt.Errorf("sqlite: backup: write: %w", err)
		}
	}
	return nil
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Force replaces the store of a data directory that holds one.
	Force bool
}

// storeFiles are every file of an embedded store a restore replaces: the
// databases with their write-ahead logs and shared-memory indexes, and
// the derived state's session record.
func storeFiles() []string {
	var names []string
	for _, f := range Files {
		names = append(names, f, f+"-wal", f+"-shm", f+"-journal")
	}
	return append(names, sessionFile, sessionFile+".tmp")
}

// restoreStaging prefixes the directory inside the data directory where
// a restore unpacks a backup before moving its files into place.
const restoreStaging = ".kith-restore-"

// Restore unpacks a backup read from r (gzipped or not) into the data
// directory dir, creating it if needed. It refuses while a server holds
// dir, and refuses a directory that holds anything unless opts.Force is
// set, in which case the store's files are replaced (other files are left
// alone). Every file is checked against the manifest's digest and for
// integrity before any file of dir is touched. The derived state is left
// out: the server rebuilds it from the log at its first start.
func Restore(ctx context.Context, r io.Reader, dir string, opts RestoreOptions) (Manifest, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Manifest{}, fmt.Errorf("sqlite: restore: create data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("sqlite: restore: %s is in use (stop the server first): %w", dir, err)
	}
	defer lock.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("sqlite: restore: %w", err)
	}
	var present []string
	for _, e := range entries {
		switch {
		case e.Name() == "LOCK":
		case strings.HasPrefix(e.Name(), restoreStaging):
			// Left by an interrupted restore; nobody else uses it.
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return Manifest{}, fmt.Errorf("sqlite: restore: remove an earlier restore's leftovers: %w", err)
			}
		default:
			present = append(present, e.Name())
		}
	}
	if len(present) > 0 && !opts.Force {
		if len(present) > 5 {
			present = append(present[:5], "…")
		}
		return Manifest{}, fmt.Errorf("sqlite: restore: %s is not empty (%s); restore into an empty directory, or use --force to replace the store in it", dir, strings.Join(present, ", "))
	}
	staging, err := os.MkdirTemp(dir, restoreStaging)
	if err != nil {
		return Manifest{}, fmt.Errorf("sqlite: restore: %w", err)
	}
	defer os.RemoveAll(staging)
	m, err := unpack(ctx, r, staging)
	if err != nil {
		return Manifest{}, err
	}
	if err := syncFile(staging); err != nil {
		return Manifest{}, err
	}
	// Replace the store: first every file of the old one (a write-ahead
	// log left beside a restored file would be replayed into it), then
	// the restored files.
	for _, name := range storeFiles() {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return Manifest{}, fmt.Errorf("sqlite: restore: remove the old %s: %w", name, err)
		}
	}
	for _, f := range m.Files {
		if err := os.Rename(filepath.Join(staging, f.Name), filepath.Join(dir, f.Name)); err != nil {
			return Manifest{}, fmt.Errorf("sqlite: restore: %w", err)
		}
	}
	if err := syncFile(dir); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// unpack reads a backup into dir and checks it: the manifest's format and
// versions, every file's size, digest and integrity, and the log's
// position.
func unpack(ctx context.Context, r io.Reader, dir string) (Manifest, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return Manifest{}, fmt.Errorf("sqlite: restore: not a Kith backup: %w", err)
		}
		defer zr.Close()
		in = zr
	}
	tr := tar.NewReader(in)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != manifestName {
		return Manifest{}, fmt.Errorf("sqlite: restore: not a Kith backup (it must start with %s)", manifestName)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("sqlite: restore: read %s: %w", manifestName, err)
	}
	if m.Format != BackupFormat {
		return Manifest{}, fmt.Errorf("sqlite: restore: not a Kith backup (format %q)", m.Format)
	}
	if m.Version < 1 || m.Version > BackupVersion {
		return Manifest{}, fmt.Errorf("sqlite: restore: backup format version %d is not one this kith reads (up to %d): restore it with the kith that made it", m.Version, BackupVersion)
	}
	want := map[string]ManifestFile{}
	for _, f := range m.Files {
		known, ok := schemaVersions[f.Name]
		if !ok {
			return Manifest{}, fmt.Errorf("sqlite: restore: the manifest names an unknown file %q", f.Name)
		}
		if f.SchemaVersion > known {
			return Manifest{}, fmt.Errorf("sqlite: restore: %s has schema version %d, newer than this kith knows (%d): restore it with the kith that made it", f.Name, f.SchemaVersion, known)
		}
		want[f.Name] = f
	}
	for _, name := range backupFiles {
		if _, ok := want[name]; !ok {
			return Manifest{}, fmt.Errorf("sqlite: restore: the manifest lacks %s", name)
		}
	}
	got := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("sqlite: restore: read the backup: %w", err)
		}
		f, ok := want[hdr.Name]
		if !ok || got[hdr.Name] || hdr.Typeflag != tar.TypeReg {
			return Manifest{}, fmt.Errorf("sqlite: restore: unexpected entry %q in the backup", hdr.Name)
		}
		got[hdr.Name] = true
		if err := writeEntry(ctx, tr, filepath.Join(dir, f.Name), f); err != nil {
			return Manifest{}, err
		}
	}
	for _, f := range m.Files {
		if !got[f.Name] {
			return Manifest{}, fmt.Errorf("sqlite: restore: the backup is truncated: %s is missing", f.Name)
		}
		c, err := checkCopy(ctx, filepath.Join(dir, f.Name))
		if err != nil {
			return Manifest{}, fmt.Errorf("sqlite: restore: %s: %w", f.Name, err)
		}
		if c.SchemaVersion != f.SchemaVersion {
			return Manifest{}, fmt.Errorf("sqlite: restore: %s has schema version %d, the manifest says %d", f.Name, c.SchemaVersion, f.SchemaVersion)
		}
	}
	last, err := lastSeq(ctx, filepath.Join(dir, "log.db"))
	if err != nil {
		return Manifest{}, fmt.Errorf("sqlite: restore: log.db: %w", err)
	}
	if last != m.LogLastSeq {
		return Manifest{}, fmt.Errorf("sqlite: restore: log.db ends at position %d, the manifest says %d", last, m.LogLastSeq)
	}
	return m, nil
}

// writeEntry writes one file of the backup to path, durably, and checks
// its size and digest against the manifest.
func writeEntry(ctx context.Context, r io.Reader, path string, f ManifestFile) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: restore: %w", err)
	}
	defer out.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), r)
	if err != nil {
		return fmt.Errorf("sqlite: restore: write %s: %w", f.Name, err)
	}
	if n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fmt.Errorf("sqlite: restore: %s is damaged: %d bytes with SHA-256 %x, the manifest says %d bytes with %s", f.Name, n, h.Sum(nil), f.Size, f.SHA256)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sqlite: restore: write %s: %w", f.Name, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("sqlite: restore: write %s: %w", f.Name, err)
	}
	return ctx.Err()
}

// lastSeq reads the events table's sequence from a log file that no
// server has open.
func lastSeq(ctx context.Context, path string) (int64, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)`).Scan(&n); err != nil {
		return 0, err
	}
	return n, nil
}
