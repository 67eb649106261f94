// Package sqlite is Kith's embedded store: kith.Store on SQLite through a
// pure-Go driver, so `kith serve` needs no other service and no cgo.
//
// It keeps two database files in the data directory. log.db is the
// append-only event log and the ack path: it has no secondary index, so a
// group commit is a sequential append and one fsync; it also holds what must
// never be lost (sources, tokens, the identifier-hashing secret), and runs
// with synchronous=FULL so a commit survives power loss. state.db holds what
// the indexer derives from the log (identity graph, profiles, traits,
// timelines) and the log position it reached, in the same transactions; the
// indexer writes it in large batches and never holds a lock the ack path
// waits for. state.db is never fsynced while the server runs (see
// session.go): a process crash loses nothing, and after an operating-system
// crash it is rebuilt from the durable log. Both files use WAL and
// secure_delete=ON, so deleted personal data does not linger.
//
// Two more files hold what is neither the log nor derived from it alone:
// insights.db (insight runs and their predictions) and audiences.db
// (audience definitions, which are user input and synced in full, and the
// audience engine's states, memberships and membership history).
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/kithcdp/kith"
)

// Options tune the store. There are none yet; the type keeps Open's
// signature stable as tuning knobs arrive.
type Options struct{}

// DB is the embedded store. Its methods are safe for concurrent use; the
// log and the state each have one writer connection and a reader pool.
type DB struct {
	dir            string
	logW, logR     *sql.DB
	stateW, stateR *sql.DB
	insW, insR     *sql.DB
	audW, audR     *sql.DB
	dedup          *dedupIndex
	// idents finds identifier rows by key (see identIndex).
	idents              *identIndex
	secretMu            sync.Mutex
	secret              []byte
	appendStmt, cntStmt *sql.Stmt
	// logCk checkpoints log.db in the background (see checkpointLoop).
	logCk    *sql.DB
	audCk    *sql.DB // checkpoints audiences.db in the background
	stopCk   chan struct{}
	ckDone   chan struct{}
	stopOnce sync.Once
	lock     *os.File
	// session is true when state.db runs unsynced and Close must record a
	// clean close (see session.go).
	session bool
}

var _ kith.Store = (*DB)(nil)

// Open opens (creating if needed) the store in dir and applies migrations.
func Open(ctx context.Context, dir string, opts Options) (*DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create data directory: %w", err)
	}
	db := &DB{dir: dir}
	var err error
	if db.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	if db.logW, db.logR, err = openPair(dir, logFile); err != nil {
		db.Close()
		return nil, err
	}
	if db.logCk, err = sql.Open("sqlite", writerDSN(dir, logFile, checkpointerCache)); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open log.db checkpointer: %w", err)
	}
	db.logCk.SetMaxOpenConns(1)
	stateSync, err := openSession(dir)
	if err != nil {
		db.Close()
		return nil, err
	}
	db.session = stateSync == "OFF"
	state := stateFile
	state.synchronous = stateSync
	if db.stateW, db.stateR, err = openPair(dir, state); err != nil {
		db.Close()
		return nil, err
	}
	// insights.db holds what insight runs computed: it cannot be derived
	// from the log, so it lives apart from state.db (which may be
	// discarded and rebuilt) and is synced like any normal database.
	if db.insW, db.insR, err = openPair(dir, insightsFile); err != nil {
		db.Close()
		return nil, err
	}
	if err := migrate(ctx, db.insW, insightMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: migrate insights.db: %w", err)
	}
	// audiences.db holds audience and computed-trait definitions (user
	// input) and what the audience engine derived from them, with the
	// engine's own cursor. Definitions are committed with
	// synchronous=FULL (see durably); the engine's batches with NORMAL.
	// Its WAL is checkpointed in the background too (the engine rewrites
	// profile states batch after batch), so the engine's commits do not
	// stop to copy pages back; the writer's auto-checkpoint is a backstop.
	if db.audW, db.audR, err = openPair(dir, audiencesFile); err != nil {
		db.Close()
		return nil, err
	}
	if db.audCk, err = sql.Open("sqlite", writerDSN(dir, audiencesFile, checkpointerCache)); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open audiences.db checkpointer: %w", err)
	}
	db.audCk.SetMaxOpenConns(1)
	if err := migrate(ctx, db.audW, audienceMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: migrate audiences.db: %w", err)
	}
	if err := migrate(ctx, db.logW, logMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: migrate log.db: %w", err)
	}
	if err := migrate(ctx, db.stateW, stateMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: migrate state.db: %w", err)
	}
	if db.idents, err = loadIdentIndex(ctx, db.stateR); err != nil {
		db.Close()
		return nil, err
	}
	if db.appendStmt, err = db.logW.PrepareContext(ctx, appendSQL(appendChunk)); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: prepare append: %w", err)
	}
	if db.cntStmt, err = db.logW.PrepareContext(ctx, `INSERT INTO counters (source_id, name, value) VALUES ($1,$2,$3)
		ON CONFLICT (source_id, name) DO UPDATE SET value = `+saturatingSum); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: prepare counters: %w", err)
	}
	if db.dedup, err = loadDedup(ctx, db.logR); err != nil {
		db.Close()
		return nil, err
	}
	db.stopCk, db.ckDone = make(chan struct{}), make(chan struct{})
	go db.checkpointLoop()
	return db, nil
}

// checkpointLoop copies log.db's WAL back into the database file every
// quarter second, on its own connection, so that a group commit on the ack
// path almost never pays for a checkpoint itself. PASSIVE never blocks the
// writer or the readers.
func (db *DB) checkpointLoop() {
	defer close(db.ckDone)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-db.stopCk:
			return
		case <-t.C:
			// A failed checkpoint is retried on the next tick; the
			// writer's auto-checkpoint bounds the WAL meanwhile.
			_, _ = db.logCk.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
			_, _ = db.audCk.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
}

// file is how one database file of the store is opened. Page caches are
// set per file and per connection so that the store's memory has a known
// bound: the writer of the derived state, whose random B-tree writes
// dominate the indexer's time, gets the most; connections that append or
// copy pages back get little.
type file struct {
	name        string
	synchronous string
	pageSize    int // applies when the file is created (never in WAL mode after)
	checkpoint  int // WAL size, in pages, that triggers a checkpoint
	writerCache int // KiB of page cache for the writer
	readerCache int // KiB of page cache for each reader connection
}

// readers is the size of each file's reader pool.
const readers = 8

// checkpointerCache is the page cache, in KiB, of a connection that only
// copies WAL frames back into its file.
const checkpointerCache = 2048

var (
	// The log is appended to, never updated in place: large pages mean
	// fewer WAL frames (one write each) per commit. Its WAL is
	// checkpointed in the background; the writer's own auto-checkpoint is
	// only a backstop at 256 MiB. Its readers scan the tail in order.
	logFile = file{name: "log.db", synchronous: "FULL", pageSize: 65536, checkpoint: 4096, writerCache: 8192, readerCache: 2048}
	// state.db's synchronous level is set at Open (see session.go); FULL
	// is what any other opening (Compact) uses.
	stateFile = file{name: "state.db", synchronous: "FULL", pageSize: 16384, checkpoint: 10000, writerCache: 65536, readerCache: 8192}
	// insights.db holds what insight runs computed.
	insightsFile = file{name: "insights.db", synchronous: "NORMAL", pageSize: 16384, checkpoint: 1000, writerCache: 8192, readerCache: 4096}
	// audiences.db: the engine's batches rewrite profile states.
	audiencesFile = file{name: "audiences.db", synchronous: "NORMAL", pageSize: 4096, checkpoint: 32768, writerCache: 32768, readerCache: 4096}
)

// files are every database file of the store. Their page caches come to
// at most 8 + 64 + 8 + 32 MiB for the writers, 2 × 2 MiB for the
// checkpointers and 8 × (2 + 8 + 4 + 4) MiB for full reader pools: 260
// MiB (TestPageCacheBound; every connection had 64 or 16 MiB, 896 MiB in
// all).
var files = [...]file{logFile, stateFile, insightsFile, audiencesFile}

// Files are the names of the database files of a data directory.
var Files = func() []string {
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.name
	}
	return names
}()

// writerDSN is the data source name of a writing connection to f in dir
// with cache KiB of page cache.
func writerDSN(dir string, f file, cache int) string {
	q := url.Values{}
	for _, p := range []string{fmt.Sprintf("page_size(%d)", f.pageSize), "journal_mode(WAL)", "synchronous(" + f.synchronous + ")", "secure_delete(ON)", "busy_timeout(10000)", "foreign_keys(OFF)", fmt.Sprintf("cache_size(-%d)", cache), "temp_store(MEMORY)", fmt.Sprintf("wal_autocheckpoint(%d)", f.checkpoint)} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	return "file:" + filepath.Join(dir, f.name) + "?" + q.Encode()
}

// openPair opens a single-connection writer and a reader pool on f.
func openPair(dir string, f file) (w, r *sql.DB, err error) {
	if w, err = sql.Open("sqlite", writerDSN(dir, f, f.writerCache)); err != nil {
		return nil, nil, fmt.Errorf("sqlite: open %s: %w", f.name, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("sqlite: open %s: %w", f.name, err)
	}
	rq := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "query_only(1)", fmt.Sprintf("cache_size(-%d)", f.readerCache)} {
		rq.Add("_pragma", p)
	}
	if r, err = sql.Open("sqlite", "file:"+filepath.Join(dir, f.name)+"?"+rq.Encode()); err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("sqlite: open %s for reading: %w", f.name, err)
	}
	r.SetMaxOpenConns(readers)
	r.SetMaxIdleConns(readers)
	return w, r, nil
}

// Close closes every connection.
func (db *DB) Close() error {
	db.stopOnce.Do(func() {
		if db.stopCk != nil {
			close(db.stopCk)
			<-db.ckDone
		}
	})
	if db.idents != nil {
		db.idents.close()
	}
	var first error
	for _, s := range []*sql.Stmt{db.appendStmt, db.cntStmt} {
		if s != nil {
			s.Close()
		}
	}
	for _, c := range []*sql.DB{db.logCk, db.logR, db.logW, db.stateR, db.stateW, db.insR, db.insW, db.audCk, db.audR, db.audW} {
		if c == nil {
			continue
		}
		if err := c.Close(); err != nil && first == nil {
			first = fmt.Errorf("sqlite: close: %w", err)
		}
	}
	if db.session && first == nil {
		if err := closeSession(db.dir); err != nil {
			first = err
		}
		db.session = false
	}
	if db.lock != nil {
		db.lock.Close() // releases the directory lock
		db.lock = nil
	}
	return first
}

// migrate applies the migrations not yet recorded in PRAGMA user_version,
// each in its own transaction together with the version bump.
func migrate(ctx context.Context, db *sql.DB, migrations []string) error {
	var version int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for i := version; i < len(migrations); i++ {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
}

// logMigrations build log.db. The events table is append-only and has no
// secondary index: the ack path is a sequential append.
var logMigrations = []string{
	`CREATE TABLE events (
		seq          INTEGER PRIMARY KEY AUTOINCREMENT,
		source_id    TEXT    NOT NULL,
		message_id   TEXT    NOT NULL,
		type         TEXT    NOT NULL,
		event        TEXT    NOT NULL,
		user_id      TEXT    NOT NULL,
		anonymous_id TEXT    NOT NULL,
		ts           INTEGER NOT NULL, -- unix microseconds
		received_at  INTEGER NOT NULL, -- unix microseconds
		revenue      REAL,
		raw          BLOB    NOT NULL
	);
	CREATE TABLE counters (
		source_id TEXT    NOT NULL,
		name      TEXT    NOT NULL,
		value     INTEGER NOT NULL,
		PRIMARY KEY (source_id, name)
	) WITHOUT ROWID;
	-- dedup_cutoff: messageIds received before it are forgotten (PruneDedup).
	CREATE TABLE log_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
	-- secret: the identifier-hashing key.
	CREATE TABLE settings (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
	CREATE TABLE sources (
		id         TEXT PRIMARY KEY,
		name       TEXT    NOT NULL,
		key_hash   BLOB    NOT NULL UNIQUE,
		disabled   INTEGER NOT NULL DEFAULT 0,
		created_at INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE tokens (
		id         TEXT PRIMARY KEY,
		name       TEXT    NOT NULL,
		scopes     TEXT    NOT NULL,
		hash       BLOB    NOT NULL UNIQUE,
		created_at INTEGER NOT NULL
	) WITHOUT ROWID;`,
	// Splits (undone merges) are decisions, not derived state: they live
	// in the durable log.db, and a rebuild of state.db applies them.
	`CREATE TABLE splits (
		id       TEXT PRIMARY KEY,
		survivor TEXT    NOT NULL,
		absorbed TEXT    NOT NULL,
		merge    BLOB    NOT NULL,
		by       TEXT    NOT NULL,
		reason   TEXT    NOT NULL,
		at       INTEGER NOT NULL
	) WITHOUT ROWID;`,
	// Identity decisions: links (merges without a linking event) and the
	// review queue of probabilistic matching.
	`CREATE TABLE links (
		id       TEXT PRIMARY KEY,
		a        TEXT    NOT NULL,
		b        TEXT    NOT NULL,
		kind     TEXT    NOT NULL,
		weight   REAL    NOT NULL,
		evidence BLOB,
		by       TEXT    NOT NULL,
		reason   TEXT    NOT NULL,
		at_seq   INTEGER NOT NULL,
		at       INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE review_items (
		id          TEXT PRIMARY KEY,
		pair        TEXT    NOT NULL UNIQUE,
		a           TEXT    NOT NULL,
		b           TEXT    NOT NULL,
		probability REAL    NOT NULL,
		weight      REAL    NOT NULL,
		evidence    BLOB,
		run_id      TEXT    NOT NULL,
		status      TEXT    NOT NULL,
		created_at  INTEGER NOT NULL,
		decided_at  INTEGER NOT NULL,
		decided_by  TEXT    NOT NULL,
		reason      TEXT    NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX review_items_status ON review_items (status, created_at);`,
	`CREATE TABLE detachments (
		id      TEXT PRIMARY KEY,
		key     BLOB    NOT NULL,
		type    TEXT    NOT NULL,
		profile TEXT    NOT NULL,
		by      TEXT    NOT NULL,
		reason  TEXT    NOT NULL,
		at      INTEGER NOT NULL
	) WITHOUT ROWID;`,
	// Third-party (DMP) audiences, matched to identifier keys. Not
	// derivable from the log, so kept with the decisions.
	`CREATE TABLE dmp_audiences (
		key         BLOB    NOT NULL,
		partner     TEXT    NOT NULL,
		audience    TEXT    NOT NULL,
		id_type     TEXT    NOT NULL,
		expires_at  INTEGER NOT NULL,
		imported_at INTEGER NOT NULL,
		PRIMARY KEY (key, partner, audience)
	) WITHOUT ROWID;
	CREATE INDEX dmp_audiences_expiry ON dmp_audiences (expires_at);`,
	// The audit log of admin actions: appended to, never changed.
	`CREATE TABLE audit_log (
		seq        INTEGER PRIMARY KEY AUTOINCREMENT,
		at         INTEGER NOT NULL,
		token_id   TEXT    NOT NULL,
		token_name TEXT    NOT NULL,
		action     TEXT    NOT NULL,
		target     TEXT    NOT NULL,
		status     INTEGER NOT NULL,
		outcome    TEXT    NOT NULL
	);`,
	// Erasure requests (identifier type and keyed hash only) and the keyed
	// hashes of suppressed identifiers.
	`CREATE TABLE erasures (
		id         TEXT PRIMARY KEY,
		created_at INTEGER NOT NULL,
		body       BLOB    NOT NULL
	) WITHOUT ROWID;
	CREATE TABLE suppressions (
		key BLOB PRIMARY KEY,
		at  INTEGER NOT NULL
	) WITHOUT ROWID;`,
	// Suppressed events have a counter of their own; they were counted as
	// the rejection reason "suppressed" although they are not rejected.
	`UPDATE counters SET name = 'suppressed' WHERE name = 'rejected:suppressed';`,
	// Destinations, their progress and their deliveries: user input and
	// the record of what was sent, neither derivable from the log, so
	// kept here with synchronous=FULL. A destination's settings are one
	// JSON document (kith.Destination without the columns beside it), so
	// a new setting needs no migration; config holds secrets, stored as
	// given. Its progress and delivered counter are in its row, filtered
	// counts by reason beside it. Deliveries are keyed by destination
	// and ID (upserts and deletes by ID); the second index serves the
	// pages of retrying or dead-lettered deliveries by ID and counting
	// them, and all of a destination's rows are a range of either. IF NOT
	// EXISTS: TestSuppressedCounterMigrates runs the migrations after the
	// counter move again.
	`CREATE TABLE IF NOT EXISTS destinations (
		id         TEXT PRIMARY KEY,
		name       TEXT    NOT NULL UNIQUE,
		config     BLOB,
		body       BLOB    NOT NULL, -- kith.Destination as JSON
		created_at INTEGER NOT NULL,
		log_seq    INTEGER NOT NULL,
		change_seq INTEGER NOT NULL,
		delivered  INTEGER NOT NULL DEFAULT 0
	) WITHOUT ROWID;
	CREATE TABLE IF NOT EXISTS destination_filtered (
		destination_id TEXT    NOT NULL,
		reason         TEXT    NOT NULL,
		value          INTEGER NOT NULL,
		PRIMARY KEY (destination_id, reason)
	) WITHOUT ROWID;
	CREATE TABLE IF NOT EXISTS destination_deliveries (
		destination_id TEXT    NOT NULL,
		id             TEXT    NOT NULL,
		key            TEXT    NOT NULL,
		seq            INTEGER NOT NULL,
		kind           TEXT    NOT NULL,
		body           BLOB,
		attempts       INTEGER NOT NULL,
		first_at       INTEGER NOT NULL,
		next_at        INTEGER NOT NULL,
		last_status    INTEGER NOT NULL,
		last_error     TEXT    NOT NULL,
		dead           INTEGER NOT NULL,
		PRIMARY KEY (destination_id, id)
	) WITHOUT ROWID;
	CREATE INDEX IF NOT EXISTS destination_deliveries_dead ON destination_deliveries (destination_id, dead, id);`,
	// Which profiles each destination received data about, so that
	// erasing a person sends a deletion to those that had them; keyed by
	// profile first (an erasure asks by profile), opaque ids only. The
	// deliveries get an index by key, so that an erasure finds a
	// person's deliveries without reading a destination's whole backlog,
	// and a worker reads its retries in key order.
	`CREATE TABLE IF NOT EXISTS destination_recipients (
		profile_id     TEXT NOT NULL,
		destination_id TEXT NOT NULL,
		PRIMARY KEY (profile_id, destination_id)
	) WITHOUT ROWID;
	CREATE INDEX IF NOT EXISTS destination_deliveries_key ON destination_deliveries (destination_id, key, seq);`,
	// A destination's positions beyond the log and the audience changes
	// (kith.DestinationProgress.Extra): in the trait change stream, in
	// sending its audiences' members when it subscribed, and in a
	// replay of a stretch of the log; a row only while one is not zero,
	// so destinations made before this need none.
	`CREATE TABLE IF NOT EXISTS destination_positions (
		destination_id TEXT PRIMARY KEY,
		trait_seq      INTEGER NOT NULL,
		audience       INTEGER NOT NULL,
		after          TEXT    NOT NULL,
		replay_at      INTEGER NOT NULL,
		replay_to      INTEGER NOT NULL,
		replay_id      INTEGER NOT NULL
	) WITHOUT ROWID;`,
}

// stateMigrations build state.db. Keys are opaque profile ids and keyed
// hashes of identifiers; personal data lives only in row values.
var stateMigrations = []string{
	`CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
	CREATE TABLE profiles (
		id           TEXT PRIMARY KEY,
		canonical_id TEXT    NOT NULL,
		created_at   INTEGER NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX profiles_canonical ON profiles (canonical_id);
	-- Rows are appended in rowid order; only the narrow unique index on the
	-- (random) key is updated at random places, so a batch of new
	-- identifiers dirties far fewer pages than a table clustered on the key.
	CREATE TABLE identifiers (
		id         INTEGER PRIMARY KEY,
		key        BLOB    NOT NULL UNIQUE,
		type       TEXT    NOT NULL,
		value      TEXT    NOT NULL,
		profile_id TEXT    NOT NULL,
		source_id  TEXT    NOT NULL,
		message_id TEXT    NOT NULL,
		first_seen INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL
	);
	CREATE INDEX identifiers_profile ON identifiers (profile_id);
	CREATE TABLE merges (
		id         INTEGER PRIMARY KEY,
		survivor   TEXT    NOT NULL,
		absorbed   TEXT    NOT NULL,
		source_id  TEXT    NOT NULL,
		message_id TEXT    NOT NULL,
		ident_type TEXT    NOT NULL,
		ident      TEXT    NOT NULL,
		at         INTEGER NOT NULL
	);
	CREATE INDEX merges_survivor ON merges (survivor);
	CREATE INDEX merges_absorbed ON merges (absorbed);
	CREATE TABLE traits (
		profile_id TEXT    NOT NULL,
		key        TEXT    NOT NULL,
		value      BLOB    NOT NULL,
		source_id  TEXT    NOT NULL,
		message_id TEXT    NOT NULL,
		event_time INTEGER NOT NULL,
		PRIMARY KEY (profile_id, key)
	) WITHOUT ROWID;
	CREATE TABLE timeline (
		profile_id TEXT    NOT NULL,
		ts         INTEGER NOT NULL,
		seq        INTEGER NOT NULL,
		type       TEXT    NOT NULL,
		event      TEXT    NOT NULL,
		PRIMARY KEY (profile_id, ts, seq)
	) WITHOUT ROWID;
	CREATE TABLE processed (source_id TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;`,
	// Orders (Order Completed events, typed for the insights), clustered
	// by profile so a scan visits each customer's orders together. The
	// derived state is emptied so the indexer rebuilds it from the log
	// and every order already indexed gets its row.
	`CREATE TABLE orders (
		profile_id TEXT    NOT NULL,
		ts         INTEGER NOT NULL,
		seq        INTEGER NOT NULL,
		source_id  TEXT    NOT NULL,
		order_id   TEXT    NOT NULL,
		revenue    REAL    NOT NULL,
		currency   TEXT    NOT NULL,
		items      BLOB    NOT NULL, -- see encodeItems
		PRIMARY KEY (profile_id, ts, seq)
	) WITHOUT ROWID;
	DELETE FROM profiles;
	DELETE FROM identifiers;
	DELETE FROM merges;
	DELETE FROM traits;
	DELETE FROM timeline;
	DELETE FROM processed;
	DELETE FROM meta WHERE key = 'index_cursor';`,
	// Consent decisions the events carried, with their history. The
	// derived state is emptied so the indexer re-derives it from the log
	// and the decisions of events already indexed get their rows.
	`CREATE TABLE consents (
		profile_id TEXT    NOT NULL,
		seq        INTEGER NOT NULL,
		category   TEXT    NOT NULL,
		granted    INTEGER NOT NULL,
		at         INTEGER NOT NULL,
		source_id  TEXT    NOT NULL,
		message_id TEXT    NOT NULL,
		PRIMARY KEY (profile_id, seq, category)
	) WITHOUT ROWID;
	DELETE FROM profiles;
	DELETE FROM identifiers;
	DELETE FROM merges;
	DELETE FROM traits;
	DELETE FROM timeline;
	DELETE FROM orders;
	DELETE FROM processed;
	DELETE FROM meta WHERE key = 'index_cursor';`,
	// The identifiers lose their unique index on the key: the store finds
	// a key's row through an index in memory (identIndex), so a new
	// identifier is appended without rewriting a page of a random-key
	// B-tree. The rows and their rowids are kept.
	`CREATE TABLE identifiers_new (
		id         INTEGER PRIMARY KEY,
		key        BLOB    NOT NULL,
		type       TEXT    NOT NULL,
		value      TEXT    NOT NULL,
		profile_id TEXT    NOT NULL,
		source_id  TEXT    NOT NULL,
		message_id TEXT    NOT NULL,
		first_seen INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL
	);
	INSERT INTO identifiers_new (id, key, type, value, profile_id, source_id, message_id, first_seen, last_seen)
		SELECT id, key, type, value, profile_id, source_id, message_id, first_seen, last_seen FROM identifiers ORDER BY id;
	DROP TABLE identifiers;
	ALTER TABLE identifiers_new RENAME TO identifiers;
	CREATE INDEX identifiers_profile ON identifiers (profile_id);`,
}

// insightMigrations build insights.db: run records, and per profile the
// latest run's predicted traits as one JSON object.
var insightMigrations = []string{
	`CREATE TABLE insight_runs (
		id          TEXT PRIMARY KEY,
		status      TEXT    NOT NULL,
		trigger     TEXT    NOT NULL,
		started_at  INTEGER NOT NULL,
		finished_at INTEGER NOT NULL,
		error       TEXT    NOT NULL,
		report      BLOB
	) WITHOUT ROWID;
	CREATE INDEX insight_runs_started ON insight_runs (started_at);
	CREATE TABLE profile_insights (
		profile_id TEXT PRIMARY KEY,
		run_id     TEXT    NOT NULL,
		at         INTEGER NOT NULL,
		traits     BLOB    NOT NULL
	) WITHOUT ROWID;`,
}

// audienceMigrations build audiences.db: the definitions as the user saved
// them (one JSON document each, so a new Definition field needs no
// migration), and the audience engine's derived data: per-profile states
// and memberships, the member lists with their sizes, and the history of
// entries and exits. Profile ids are opaque; no personal data appears in
// keys.
var audienceMigrations = []string{
	`CREATE TABLE definitions (
		kind TEXT NOT NULL,
		key  TEXT NOT NULL,
		body BLOB NOT NULL, -- kith.Definition as JSON
		PRIMARY KEY (kind, key)
	) WITHOUT ROWID;
	-- cursor and states_cursor: the log positions the engine's
	-- memberships and states reflect.
	CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
	-- One row per profile the engine keeps anything for. id is the
	-- profile's ordinal, given when it is first stored and never reused
	-- (AUTOINCREMENT), so that member chunks can name it. members (the
	-- profile's memberships, see encodeMembers) precedes state so that
	-- reading it never walks a large state's overflow pages; an entry or
	-- exit rewrites the profile's one row. A rowid table with a narrow
	-- unique index on the profile id: a state (often a few KB) stays
	-- inside its table page, where an index B-tree (WITHOUT ROWID) would
	-- spill it to overflow pages. A row with neither a state nor a
	-- membership is deleted.
	CREATE TABLE profiles (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		profile_id TEXT NOT NULL UNIQUE,
		members    BLOB, -- NULL for none
		state      BLOB  -- NULL for none
	);
	-- An audience's members as ordinals, chunk holding ordinals
	-- chunk*4096 to chunk*4096+4095 (see bitmap.encode).
	CREATE TABLE member_chunks (
		audience TEXT    NOT NULL,
		chunk    INTEGER NOT NULL,
		bits     BLOB    NOT NULL,
		PRIMARY KEY (audience, chunk)
	) WITHOUT ROWID;
	CREATE TABLE sizes (audience TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
	-- The history. A row covers seqs seq to seq+n-1: a change (n = 1,
	-- profile_id set) or a bulk change (n > 1, profile_ids the front-coded
	-- ids in seq order, see encodeIDs). seq is the rowid, given by the
	-- single writer in order, so seq order is commit order and the
	-- change stream never skips a row.
	CREATE TABLE changes (
		seq         INTEGER PRIMARY KEY,
		n           INTEGER NOT NULL,
		audience    TEXT    NOT NULL,
		profile_id  TEXT,
		profile_ids BLOB,
		entered     INTEGER NOT NULL,
		at          INTEGER NOT NULL, -- unix microseconds
		cause       TEXT    NOT NULL,
		cause_seq   INTEGER NOT NULL
	);
	CREATE INDEX changes_audience ON changes (audience, seq);
	CREATE INDEX changes_profile ON changes (profile_id, seq) WHERE profile_id IS NOT NULL;
	CREATE INDEX changes_bulk ON changes (seq) WHERE n > 1;`,
	// The trait change stream (kith.TraitChange): seq is the rowid,
	// given by the single writer in order, so seq order is commit order;
	// AUTOINCREMENT, so that a seq erasure deletes is never given again
	// (a reader past it would miss the new change). Indexed by profile
	// for erasure.
	`CREATE TABLE trait_changes (
		seq        INTEGER PRIMARY KEY AUTOINCREMENT,
		profile_id TEXT    NOT NULL,
		key        TEXT    NOT NULL,
		value      BLOB    NOT NULL, -- JSON
		provenance TEXT    NOT NULL,
		at         INTEGER NOT NULL, -- unix microseconds
		cause_seq  INTEGER NOT NULL
	);
	CREATE INDEX trait_changes_profile ON trait_changes (profile_id);`,
	// The last value of each tracked trait recorded in trait_changes,
	// written with it (kith.AudienceStore.LoadTraitValues).
	`CREATE TABLE trait_values (
		profile_id TEXT NOT NULL,
		key        TEXT NOT NULL,
		value      BLOB NOT NULL,
		PRIMARY KEY (profile_id, key)
	) WITHOUT ROWID;`,
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }
