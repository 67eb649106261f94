package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/membership"
)

// SaveDefinition creates or replaces the definition (d.Kind, d.Key) in
// audiences.db. The store keeps d as given; bumping Version is the
// caller's job, so that a running backfill can tell it is out of date.
func (db *DB) SaveDefinition(ctx context.Context, d kith.Definition) error {
	body, err := membership.EncodeDefinition(d)
	if err != nil {
		return fmt.Errorf("sqlite: save definition: %w", err)
	}
	err = db.durably(ctx, func(c *sql.Conn) error {
		_, err := c.ExecContext(ctx, `INSERT INTO definitions (kind, key, body) VALUES ($1,$2,$3)
		ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body`, d.Kind, d.Key, body)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: save definition: %w", err)
	}
	return nil
}

// durably runs f on the audiences.db writer with synchronous=FULL, so
// its commit is on disk when it returns. The engine's own batches commit
// with NORMAL: they carry the engine's cursor, so a power cut that loses
// the last of them only makes the engine re-read that stretch of the log.
// Definitions are the user's and cannot be re-derived.
func (db *DB) durably(ctx context.Context, f func(*sql.Conn) error) error {
	c, err := db.audW.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
		return err
	}
	defer c.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = NORMAL`)
	return f(c)
}

// DeleteDefinition removes the definition (kind, key), or fails with
// ENOTFOUND if there is none. Memberships and history of an audience stay:
// only the engine writes those, by applying exits.
func (db *DB) DeleteDefinition(ctx context.Context, kind, key string) error {
	var res sql.Result
	err := db.durably(ctx, func(c *sql.Conn) (err error) {
		res, err = c.ExecContext(ctx, `DELETE FROM definitions WHERE kind = $1 AND key = $2`, kind, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete definition: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: delete definition: %w", err)
	} else if n == 0 {
		return kith.Errorf(kith.ENOTFOUND, "%s %q not found", kind, key)
	}
	return nil
}

// Definitions lists every definition, ordered by kind and then key (the
// table's primary key).
func (db *DB) Definitions(ctx context.Context) ([]kith.Definition, error) {
	rows, err := db.audR.QueryContext(ctx, `SELECT kind, key, body FROM definitions ORDER BY kind, key`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: definitions: %w", err)
	}
	defer rows.Close()
	var out []kith.Definition
	for rows.Next() {
		var kind, key string
		var body []byte
		if err := rows.Scan(&kind, &key, &body); err != nil {
			return nil, fmt.Errorf("sqlite: definitions: %w", err)
		}
		d, err := membership.DecodeDefinition(body)
		if err != nil {
			return nil, fmt.Errorf("sqlite: definition %s %q: %w", kind, key, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: definitions: %w", err)
	}
	return out, nil
}

// AudienceCursors returns the log positions of the last batches the
// audience engine applied with a Cursor and with a StatesCursor, 0 before
// the first.
func (db *DB) AudienceCursors(ctx context.Context) (cursor, statesCursor int64, err error) {
	rows, err := db.audR.QueryContext(ctx, `SELECT key, value FROM meta WHERE key IN ('cursor', 'states_cursor')`)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: audience cursors: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var v int64
		if err := rows.Scan(&key, &v); err != nil {
			return 0, 0, fmt.Errorf("sqlite: audience cursors: %w", err)
		}
		if key == "cursor" {
			cursor = v
		} else {
			statesCursor = v
		}
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("sqlite: audience cursors: %w", err)
	}
	return cursor, statesCursor, nil
}

// batchNames counts the profile ids b names, repeats included.
func batchNames(b *kith.AudienceBatch) int {
	n := len(b.States) + len(b.Changes)
	for _, bc := range b.Bulk {
		n += len(bc.ProfileIDs)
	}
	return n
}

// lookupBatch is how many ids one IN list carries.
const lookupBatch = 500

// profileCols are the columns of a profile row a batch reads.
const profileCols = `SELECT id, profile_id, members, state IS NOT NULL FROM profiles`

// lookup reads the rows of the batch's profiles that exist and has p plan
// them. A batch that is a page of a backfill names profiles of a run of
// consecutive ordinals (ScanStates hands them out in ordinal order), in
// that order: if the ordinals of the first and last profile each list
// names span few more ordinals than the batch names profiles, that range
// is read in one pass, which is much cheaper than as many lookups by
// profile id. The profiles not found in it (or all, for another batch) are
// looked up by id, in id order so that the index is walked forwards.
func lookup(ctx context.Context, tx *sql.Tx, p *membership.Plan, b *kith.AudienceBatch) error {
	if lo, hi, err := probe(ctx, tx, b, len(p.IDs())); err != nil {
		return err
	} else if hi >= lo && hi-lo < 2*int64(len(p.IDs())) {
		rows, err := tx.QueryContext(ctx, profileCols+` WHERE id BETWEEN $1 AND $2 ORDER BY id`, lo, hi)
		if err != nil {
			return err
		}
		if err := foundRows(p, rows); err != nil {
			return err
		}
	}
	ids := p.NotFound()
	slices.Sort(ids)
	return lookupIDs(ctx, tx, profileCols+` WHERE profile_id IN `, ids, func(stmt *sql.Stmt, args ...any) error {
		rows, err := stmt.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		return foundRows(p, rows)
	})
}

// probe returns the lowest and highest ordinal of the first and last
// profiles that the lists of b (states, changes, each bulk change) name,
// lo > hi if none is stored or the batch names fewer than probeMin
// profiles (n).
func probe(ctx context.Context, tx *sql.Tx, b *kith.AudienceBatch, n int) (lo, hi int64, err error) {
	lo, hi = math.MaxInt64, 0
	if n < probeMin {
		return lo, hi, nil
	}
	var probes []any
	ends := func(first, last string) { probes = append(probes, first, last) }
	if n := len(b.States); n > 0 {
		ends(b.States[0].ProfileID, b.States[n-1].ProfileID)
	}
	if n := len(b.Changes); n > 0 {
		ends(b.Changes[0].ProfileID, b.Changes[n-1].ProfileID)
	}
	for _, bc := range b.Bulk {
		if n := len(bc.ProfileIDs); n > 0 {
			ends(bc.ProfileIDs[0], bc.ProfileIDs[n-1])
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT min(id), max(id) FROM profiles WHERE profile_id IN (`+placeholders(len(probes), 1)+`)`, probes...)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	var first, last sql.NullInt64
	for rows.Next() {
		if err := rows.Scan(&first, &last); err != nil {
			return 0, 0, err
		}
	}
	if first.Valid {
		lo, hi = first.Int64, last.Int64
	}
	return lo, hi, rows.Err()
}

// probeMin is the fewest profiles for which a batch probes for a run of
// ordinals.
const probeMin = 1000

// scanProfile scans a row of profileCols.
func scanProfile(rows *sql.Rows, r *membership.StoredRow) error {
	return rows.Scan(&r.Ord, &r.ID, &r.Members, &r.HasState)
}

// foundRows hands the stored rows that rows reads to p, a page at a time,
// closing rows.
func foundRows(p *membership.Plan, rows *sql.Rows) error {
	defer rows.Close()
	page := make([]membership.StoredRow, 0, 256)
	for rows.Next() {
		var r membership.StoredRow
		if err := scanProfile(rows, &r); err != nil {
			return err
		}
		if page = append(page, r); len(page) == cap(page) {
			if err := p.Found(page); err != nil {
				return err
			}
			page = page[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return p.Found(page)
}

// tableScan reads the whole profiles table, in ordinal order, on a
// goroutine of its own, so that the batch is planned meanwhile.
type tableScan struct {
	pages chan []membership.StoredRow
	stop  chan struct{}
	errc  chan error
}

// startScan starts reading the profiles table.
func startScan(ctx context.Context, tx *sql.Tx) *tableScan {
	const pageRows = 2048
	s := &tableScan{pages: make(chan []membership.StoredRow, 1024), stop: make(chan struct{}), errc: make(chan error, 1)}
	go func() {
		defer close(s.pages)
		s.errc <- func() error {
			rows, err := tx.QueryContext(ctx, profileCols+` ORDER BY id`)
			if err != nil {
				return err
			}
			defer rows.Close()
			page := make([]membership.StoredRow, 0, pageRows)
			send := func() bool {
				select {
				case s.pages <- page:
					page = make([]membership.StoredRow, 0, pageRows)
					return true
				case <-s.stop:
					return false
				}
			}
			for rows.Next() {
				var r membership.StoredRow
				if err := scanProfile(rows, &r); err != nil {
					return err
				}
				if page = append(page, r); len(page) == pageRows && !send() {
					return nil
				}
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if len(page) > 0 {
				send()
			}
			return nil
		}()
	}()
	return s
}

// each calls fn with every page of rows until it fails, and ends the
// scan.
func (s *tableScan) each(fn func(page []membership.StoredRow) error) error {
	var err error
	for page := range s.pages {
		if err = fn(page); err != nil {
			break
		}
	}
	if cerr := s.cancel(); err == nil {
		err = cerr
	}
	return err
}

// cancel ends the scan and waits for its goroutine, returning its error.
func (s *tableScan) cancel() error {
	close(s.stop)
	for range s.pages {
	}
	return <-s.errc
}

// lookupIDs runs query, which ends in "IN ", with ids in lists of up to
// lookupBatch, preparing each length of list once.
func lookupIDs(ctx context.Context, tx *sql.Tx, query string, ids []string, fn func(stmt *sql.Stmt, args ...any) error) error {
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, s := range stmts {
			s.Close()
		}
	}()
	args := make([]any, 0, lookupBatch)
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), lookupBatch)
		stmt := stmts[n]
		if stmt == nil {
			var err error
			if stmt, err = tx.PrepareContext(ctx, query+`(?`+strings.Repeat(`,?`, n-1)+`)`); err != nil {
				return err
			}
			stmts[n] = stmt
		}
		args = args[:0]
		for _, id := range rest[:n] {
			args = append(args, id)
		}
		if err := fn(stmt, args...); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// rowsPerWrite is how many rows one statement of writeRows carries.
const rowsPerWrite = 250

// writeRows writes n rows with statements "head VALUES (...),(...) tail"
// of up to rowsPerWrite rows each (the full-size one prepared once); fill
// appends the values of row i to dst. The values of the next statement
// are put together on another goroutine while SQLite executes the
// current one, so that encoding a million rows overlaps writing them;
// fill must not touch what the caller changes meanwhile.
func writeRows(ctx context.Context, tx *sql.Tx, head string, ncols int, tail string, n int, fill func(dst []any, i int) []any) error {
	if n == 0 {
		return nil
	}
	stmtFor := func(rows int) string {
		row := `(?` + strings.Repeat(`,?`, ncols-1) + `)`
		return head + ` VALUES ` + row + strings.Repeat(`,`+row, rows-1) + ` ` + tail
	}
	var full *sql.Stmt
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	exec := func(args []any) error {
		var err error
		if len(args) == rowsPerWrite*ncols {
			if full == nil {
				if full, err = tx.PrepareContext(ctx, stmtFor(rowsPerWrite)); err != nil {
					return err
				}
			}
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, stmtFor(len(args)/ncols), args...)
		}
		return err
	}
	if n <= rowsPerWrite {
		args := make([]any, 0, n*ncols)
		for i := range n {
			args = fill(args, i)
		}
		if err := exec(args); err != nil {
			return fmt.Errorf("%s: %w", head, err)
		}
		return nil
	}
	free, ready := make(chan []any, 3), make(chan []any, 3)
	for range 3 {
		free <- make([]any, 0, rowsPerWrite*ncols)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ready)
		for start := 0; start < n; start += rowsPerWrite {
			var args []any
			select {
			case args = <-free:
			case <-stop:
				return
			}
			args = args[:0]
			for i := start; i < min(start+rowsPerWrite, n); i++ {
				args = fill(args, i)
			}
			ready <- args
		}
	}()
	defer func() {
		close(stop)
		for range ready {
		}
		<-done
	}()
	for args := range ready {
		if err := exec(args); err != nil {
			return fmt.Errorf("%s: %w", head, err)
		}
		clear(args)
		free <- args
	}
	return nil
}

// writeProfiles writes the profile rows the batch changes, each kind of
// write in ordinal order (sequential in the table): a new profile goes
// with both columns, its row inserted; an existing one has its row
// updated in place, or deleted when it holds nothing any more.
func writeProfiles(ctx context.Context, tx *sql.Tx, p *membership.Plan) error {
	w := p.Rows()
	var buf []byte
	blob := func(r membership.Row) []byte {
		if buf = p.AppendMembers(buf[:0], r); len(buf) == 0 {
			return nil
		}
		return slices.Clone(buf)
	}
	writes := []struct {
		rows []membership.Row
		cols string
		set  string
		args func(dst []any, r membership.Row) []any
	}{
		{w.Both, `members, state`, `members = excluded.members, state = excluded.state`, func(dst []any, r membership.Row) []any { return append(dst, blob(r), p.State(r)) }},
		{w.States, `state`, `state = excluded.state`, func(dst []any, r membership.Row) []any { return append(dst, p.State(r)) }},
		{w.Members, `members`, `members = excluded.members`, func(dst []any, r membership.Row) []any { return append(dst, blob(r)) }},
	}
	for _, wr := range writes {
		ncols := 3 + strings.Count(wr.cols, ",")
		if err := writeRows(ctx, tx, `INSERT INTO profiles (id, profile_id, `+wr.cols+`)`, ncols, `ON CONFLICT (id) DO UPDATE SET `+wr.set, len(wr.rows), func(dst []any, k int) []any {
			r := wr.rows[k]
			return wr.args(append(dst, r.Ord, p.ID(r)), r)
		}); err != nil {
			return err
		}
	}
	for rest := w.Deletes; len(rest) > 0; {
		n := min(len(rest), lookupBatch)
		args := make([]any, n)
		for i, r := range rest[:n] {
			args[i] = r.Ord
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM profiles WHERE id IN (`+placeholders(n, 1)+`)`, args...); err != nil {
			return fmt.Errorf("delete profiles: %w", err)
		}
		rest = rest[n:]
	}
	return nil
}

// writeChunks applies the batch's chunk changes: each touched chunk is
// read once (an audience's in lists of lookupBatch), changed and written
// back, or deleted when it is left empty.
func writeChunks(ctx context.Context, tx *sql.Tx, p *membership.Plan) error {
	type chunkRow struct {
		audience string
		chunk    int64
		bits     []byte
	}
	var puts []chunkRow
	var dels []any
	changes := p.Chunks()
	for len(changes) > 0 {
		a := changes[0].Audience
		n := 1
		for n < len(changes) && changes[n].Audience == a {
			n++
		}
		group := changes[:n]
		changes = changes[n:]
		old := make(map[int64][]byte, len(group))
		for rest := group; len(rest) > 0; {
			n := min(len(rest), lookupBatch)
			args := make([]any, 0, n+1)
			args = append(args, a)
			for _, c := range rest[:n] {
				args = append(args, c.Chunk)
			}
			rows, err := tx.QueryContext(ctx, `SELECT chunk, bits FROM member_chunks WHERE audience = ? AND chunk IN (?`+strings.Repeat(`,?`, n-1)+`)`, args...)
			if err != nil {
				return fmt.Errorf("read member chunks: %w", err)
			}
			for rows.Next() {
				var k int64
				var b []byte
				if err := rows.Scan(&k, &b); err != nil {
					rows.Close()
					return fmt.Errorf("read member chunks: %w", err)
				}
				old[k] = b
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("read member chunks: %w", err)
			}
			rest = rest[n:]
		}
		for _, c := range group {
			switch bits, write, err := c.Apply(old[c.Chunk]); {
			case err != nil:
				return err
			case write && bits == nil:
				dels = append(dels, a, c.Chunk)
			case write:
				puts = append(puts, chunkRow{a, c.Chunk, bits})
			}
		}
	}
	if err := insertRows(ctx, tx, `INSERT INTO member_chunks (audience, chunk, bits)`, 3,
		`ON CONFLICT (audience, chunk) DO UPDATE SET bits = excluded.bits`, len(puts), func(i int) []any {
			return []any{puts[i].audience, puts[i].chunk, puts[i].bits}
		}); err != nil {
		return err
	}
	for i := 0; i < len(dels); i += 2 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM member_chunks WHERE audience = $1 AND chunk = $2`, dels[i], dels[i+1]); err != nil {
			return fmt.Errorf("delete member chunk: %w", err)
		}
	}
	return nil
}

// ApplyAudienceBatch applies b in one audiences.db transaction: the states
// (the last one per profile), every membership change in order and then
// every bulk change (each moving the profile's memberships, the
// audience's member chunk and size and appending to the history), and the
// cursors that are > 0. An entry for a profile that is already a member,
// or an exit for one that is not, rolls the whole batch back with
// ECONFLICT: it means the engine's view of the memberships and the
// store's have drifted apart, and applying the rest would make the
// history contradict the member lists.
//
// The batch is planned in memory (membership.Plan) before anything is
// written: the rows of the profiles it names are read once (a profile
// named for the first time gets the next ordinals), each profile's
// changes are replayed over its memberships, and then each touched row is
// written once, in ordinal order: a profile's state and memberships in
// one row, each member chunk once, each size once, and a bulk change as
// one history row. How the rows are read depends on the batch: one that
// names a large part of all profiles (a whole backfill at once) reads the
// profiles table in one pass, on another goroutine while the batch is
// indexed; a page of a backfill reads its run of ordinals (see lookup);
// others look their profiles up by id.
func (db *DB) ApplyAudienceBatch(ctx context.Context, b kith.AudienceBatch) error {
	tx, err := db.audW.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: apply audience batch: begin: %w", err)
	}
	defer tx.Rollback()
	if err := applyAudienceBatch(ctx, tx, &b); err != nil {
		return fmt.Errorf("sqlite: apply audience batch: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: apply audience batch: commit: %w", err)
	}
	return nil
}

// scanMin is the fewest profiles for which a batch may read the whole
// profiles table; it does when it names at least a third of them.
const scanMin = 10000

func applyAudienceBatch(ctx context.Context, tx *sql.Tx, b *kith.AudienceBatch) error {
	var lastOrd int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'profiles'), 0)`).Scan(&lastOrd); err != nil {
		return fmt.Errorf("read ordinals: %w", err)
	}
	// The scan starts while the batch is indexed if it may be needed
	// (counting repeats), and stops if it is not.
	var scan *tableScan
	if names := batchNames(b); lastOrd > 0 && names >= scanMin && int64(names)*3 >= lastOrd {
		scan = startScan(ctx, tx)
	}
	p := membership.NewPlan(b)
	if n := len(p.IDs()); scan != nil && (n < scanMin || int64(n)*3 < lastOrd) {
		if err := scan.cancel(); err != nil {
			return fmt.Errorf("read profiles: %w", err)
		}
		scan = nil
	}
	var err error
	switch {
	case scan != nil:
		err = scan.each(p.Found)
	case lastOrd > 0:
		err = lookup(ctx, tx, p, b)
	}
	if err != nil {
		return fmt.Errorf("read profiles: %w", err)
	}
	if err := p.Finish(lastOrd + 1); err != nil {
		return err
	}
	var next int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce((SELECT seq + n FROM changes ORDER BY seq DESC LIMIT 1), 1)`).Scan(&next); err != nil {
		return fmt.Errorf("read history: %w", err)
	}
	history := p.History(next)
	// The history's bulk rows are encoded while the profiles are written.
	idBlobs := make([][]byte, len(history))
	encoded := make(chan struct{})
	go func() {
		defer close(encoded)
		for k, r := range history {
			if r.N > 1 {
				idBlobs[k] = membership.EncodeIDs(r.ProfileIDs)
			}
		}
	}()
	defer func() { <-encoded }()
	if err := writeProfiles(ctx, tx, p); err != nil {
		return fmt.Errorf("write profiles: %w", err)
	}
	if err := writeChunks(ctx, tx, p); err != nil {
		return err
	}
	for _, s := range p.Sizes() {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sizes (audience, n) VALUES ($1,$2)
			ON CONFLICT (audience) DO UPDATE SET n = n + excluded.n`, s.Audience, s.N); err != nil {
			return fmt.Errorf("size of %q: %w", s.Audience, err)
		}
	}
	<-encoded
	if err := writeHistory(ctx, tx, history, idBlobs); err != nil {
		return err
	}
	if err := writeTraitChanges(ctx, tx, b.TraitChanges); err != nil {
		return err
	}
	for _, c := range []struct {
		key string
		v   int64
	}{{"cursor", b.Cursor}, {"states_cursor", b.StatesCursor}} {
		if c.v <= 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, c.key, c.v); err != nil {
			return fmt.Errorf("%s: %w", c.key, err)
		}
	}
	return nil
}

// writeHistory appends the history rows of a batch: the changes in one
// multi-row insert, each bulk change as a row of its own with its ids
// front-coded in idBlobs (by the row's index).
func writeHistory(ctx context.Context, tx *sql.Tx, history []membership.HistoryRow, idBlobs [][]byte) error {
	var singles []*membership.HistoryRow
	for k := range history {
		if history[k].N == 1 {
			singles = append(singles, &history[k])
		}
	}
	if err := insertRows(ctx, tx, `INSERT INTO changes (seq, n, audience, profile_id, entered, at, cause, cause_seq)`, 8, ``,
		len(singles), func(i int) []any {
			r := singles[i]
			return []any{r.Seq, 1, r.Audience, r.ProfileID, r.Entered, micros(r.At), r.Cause, r.CauseSeq}
		}); err != nil {
		return err
	}
	for k, r := range history {
		if r.N == 1 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO changes (seq, n, audience, profile_ids, entered, at, cause, cause_seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 0)`, r.Seq, r.N, r.Audience, idBlobs[k], r.Entered, micros(r.At), r.Cause); err != nil {
			return fmt.Errorf("history of the bulk change at seq %d: %w", r.Seq, err)
		}
	}
	return nil
}

// LoadStates returns the stored states of those of ids that have one,
// looking them up 500 at a time.
func (db *DB) LoadStates(ctx context.Context, ids []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(ids))
	err := lookupProfiles(ctx, db.audR, `SELECT profile_id, state FROM profiles WHERE state IS NOT NULL AND profile_id IN `, ids, func(rows *sql.Rows) error {
		var id string
		var st []byte
		if err := rows.Scan(&id, &st); err != nil {
			return err
		}
		out[id] = nonNil(st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: load states: %w", err)
	}
	return out, nil
}

// LoadProfiles returns the stored states and the memberships of those of
// ids that have them, in one query per 500 ids.
func (db *DB) LoadProfiles(ctx context.Context, ids []string) (map[string][]byte, map[string][]kith.Member, error) {
	states, members := make(map[string][]byte, len(ids)), make(map[string][]kith.Member)
	err := lookupProfiles(ctx, db.audR, `SELECT profile_id, state IS NOT NULL, state, members FROM profiles WHERE profile_id IN `, ids, func(rows *sql.Rows) error {
		var id string
		var hasState bool
		var st, blob []byte
		if err := rows.Scan(&id, &hasState, &st, &blob); err != nil {
			return err
		}
		if hasState {
			states[id] = nonNil(st)
		}
		if blob == nil {
			return nil
		}
		return membership.CollectMembers(members, id, blob)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: load profiles: %w", err)
	}
	return states, members, nil
}

// LoadMemberships returns the memberships of those of ids that have any,
// sorted by audience, looking them up 500 at a time.
func (db *DB) LoadMemberships(ctx context.Context, ids []string) (map[string][]kith.Member, error) {
	out := make(map[string][]kith.Member)
	err := lookupProfiles(ctx, db.audR, `SELECT profile_id, members FROM profiles WHERE members IS NOT NULL AND profile_id IN `, ids, func(rows *sql.Rows) error {
		var id string
		var blob []byte
		if err := rows.Scan(&id, &blob); err != nil {
			return err
		}
		return membership.CollectMembers(out, id, blob)
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: load memberships: %w", err)
	}
	return out, nil
}

// lookupProfiles runs query, which ends in "IN ", with ids in lists of up
// to lookupBatch, calling fn for every row.
func lookupProfiles(ctx context.Context, db *sql.DB, query string, ids []string, fn func(*sql.Rows) error) error {
	for rest := ids; len(rest) > 0; {
		n := min(len(rest), lookupBatch)
		args := make([]any, n)
		for i, id := range rest[:n] {
			args[i] = id
		}
		rows, err := db.QueryContext(ctx, query+`(`+placeholders(n, 1)+`)`, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := fn(rows); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// nonNil keeps a stored empty state distinguishable from none.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// scanPage is how many profiles ScanStates reads per query.
const scanPage = 2000

// ScanStates calls fn for every profile with a state or a membership, in
// ordinal order (the order in which profiles were first stored), with its
// state (nil if it has none) and its memberships. It reads in pages, each
// a short read of its own, so a scan over millions of profiles pins no
// snapshot (and no WAL growth) for its whole duration and fn may write to
// the store meanwhile; a profile stored during the scan is visited, as it
// comes after the current page.
func (db *DB) ScanStates(ctx context.Context, fn func(id string, state []byte, members []kith.Member) error) error {
	page := make([]membership.StateRow, 0, scanPage)
	return membership.ScanStates("sqlite: scan states", scanPage, func(after int64) ([]membership.StateRow, error) {
		page = page[:0]
		rows, err := db.audR.QueryContext(ctx, `SELECT id, profile_id, state, state IS NOT NULL, members FROM profiles
			WHERE id > $1 AND (state IS NOT NULL OR members IS NOT NULL) ORDER BY id LIMIT $2`, after, scanPage)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var r membership.StateRow
			if err := rows.Scan(&r.Ord, &r.ID, &r.State, &r.HasState, &r.Members); err != nil {
				return nil, err
			}
			page = append(page, r)
		}
		return page, rows.Err()
	}, fn)
}

// Members lists up to limit members of audience in ordinal order, starting
// after the profile after ("" for the first page), which must be a known
// profile (EINVALID otherwise; it need not be a member any more). It walks
// the audience's member chunks from the one holding after's ordinal and
// then looks the ordinals' profile ids up, in one read transaction so that
// both agree. Since is not filled in.
func (db *DB) Members(ctx context.Context, audience, after string, limit int) ([]kith.Member, error) {
	if limit <= 0 {
		return nil, nil
	}
	tx, err := db.audR.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: members: %w", err)
	}
	defer tx.Rollback()
	var from int64
	if after != "" {
		err := tx.QueryRowContext(ctx, `SELECT id FROM profiles WHERE profile_id = $1`, after).Scan(&from)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, kith.Errorf(kith.EINVALID, "members of %q after %q: no such profile", audience, after)
		} else if err != nil {
			return nil, fmt.Errorf("sqlite: members: %w", err)
		}
		from++
	}
	ords, err := func() ([]int64, error) {
		rows, err := tx.QueryContext(ctx, `SELECT chunk, bits FROM member_chunks WHERE audience = $1 AND chunk >= $2 ORDER BY chunk`, audience, from>>membership.ChunkShift)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var ords []int64
		var m membership.Chunk
		for len(ords) < limit && rows.Next() {
			var chunk int64
			var b sql.RawBytes
			if err := rows.Scan(&chunk, &b); err != nil {
				return nil, err
			}
			if err := membership.DecodeChunk(b, &m); err != nil {
				return nil, fmt.Errorf("chunk %d: %w", chunk, err)
			}
			base := chunk << membership.ChunkShift
			m.Each(max(from-base, 0), func(i int64) bool {
				ords = append(ords, base+i)
				return len(ords) < limit
			})
		}
		return ords, rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("sqlite: members: %w", err)
	}
	ids := make(map[int64]string, len(ords))
	for rest := ords; len(rest) > 0; {
		n := min(len(rest), lookupBatch)
		rows, err := tx.QueryContext(ctx, `SELECT id, profile_id FROM profiles WHERE id IN (`+placeholders(n, 1)+`)`, int64Args(rest[:n])...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: members: %w", err)
		}
		for rows.Next() {
			var ord int64
			var id string
			if err := rows.Scan(&ord, &id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: members: %w", err)
			}
			ids[ord] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: members: %w", err)
		}
		rest = rest[n:]
	}
	out := make([]kith.Member, 0, len(ords))
	for _, ord := range ords {
		if id, ok := ids[ord]; ok {
			out = append(out, kith.Member{Audience: audience, ProfileID: id})
		}
	}
	return out, nil
}

// AudienceSize returns the number of members of audience, kept in step
// with the member list so that no count over it is needed; 0 for an
// audience without members or unknown.
func (db *DB) AudienceSize(ctx context.Context, audience string) (int64, error) {
	var n int64
	err := db.audR.QueryRowContext(ctx, `SELECT n FROM sizes WHERE audience = $1`, audience).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("sqlite: audience size: %w", err)
	}
	return n, nil
}

// historyCols are the columns scanHistory scans.
const historyCols = `seq, n, audience, profile_id, profile_ids, entered, at, cause, cause_seq`

// scanHistory scans a row of historyCols into r.
func scanHistory(rows *sql.Rows, r *membership.HistoryRow) error {
	var profileID sql.NullString
	var at int64
	if err := rows.Scan(&r.Seq, &r.N, &r.Audience, &profileID, &r.IDs, &r.Entered, &at, &r.Cause, &r.CauseSeq); err != nil {
		return err
	}
	r.ProfileID, r.At = profileID.String, fromMicros(at)
	return nil
}

// MembershipChanges returns up to limit changes with Seq > after in Seq
// order, only of audience and of profileID where those are not "", a bulk
// change expanded into one change per profile. The query names only the
// filters given, so that SQLite walks the (audience, seq) or (profile_id,
// seq) index instead of the whole history; for one profile, the bulk rows
// after the position are searched as well (there are few of them, a
// handful per backfill).
func (db *DB) MembershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error) {
	if limit <= 0 {
		return nil, nil
	}
	tx, err := db.audR.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: held changes: %w", err)
	}
	defer tx.Rollback()
	out, err := membershipChanges(ctx, tx, after, audience, profileID, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: held changes: %w", err)
	}
	return out, nil
}

func membershipChanges(ctx context.Context, tx *sql.Tx, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error) {
	// The first row to read: the one holding seq after+1, which is a bulk
	// row that began at or before after if one straddles it.
	from := after + 1
	var seq, n int64
	err := tx.QueryRowContext(ctx, `SELECT seq, n FROM changes WHERE seq <= $1 ORDER BY seq DESC LIMIT 1`, after).Scan(&seq, &n)
	if err == nil && seq+n-1 > after {
		from = seq
	} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	// each runs q and calls fn with every row until fn returns false.
	each := func(q string, args []any, fn func(r *membership.HistoryRow) (bool, error)) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		var r membership.HistoryRow
		for rows.Next() {
			if err := scanHistory(rows, &r); err != nil {
				return err
			}
			if more, err := fn(&r); err != nil || !more {
				return err
			}
		}
		return rows.Err()
	}
	var out []kith.MembershipChange
	if profileID == "" {
		q := `SELECT ` + historyCols + ` FROM changes WHERE seq >= $1`
		args := []any{from}
		if audience != "" {
			q += ` AND audience = $2`
			args = append(args, audience)
		}
		// Every row holds at least one change after the position.
		q += fmt.Sprintf(` ORDER BY seq LIMIT $%d`, len(args)+1)
		args = append(args, limit)
		err := each(q, args, func(r *membership.HistoryRow) (bool, error) {
			var err error
			out, err = r.Expand(out, after, limit)
			return len(out) < limit, err
		})
		return out, err
	}

	q := `SELECT ` + historyCols + ` FROM changes WHERE profile_id = $1 AND seq > $2`
	args := []any{profileID, after}
	if audience != "" {
		q += ` AND audience = $3`
		args = append(args, audience)
	}
	q += fmt.Sprintf(` ORDER BY seq LIMIT $%d`, len(args)+1)
	args = append(args, limit)
	if err := each(q, args, func(r *membership.HistoryRow) (bool, error) {
		out = append(out, r.Change(r.Seq, r.ProfileID))
		return true, nil
	}); err != nil {
		return nil, err
	}
	// Bulk rows name the profile at most once each.
	var bulk []kith.MembershipChange
	q = `SELECT ` + historyCols + ` FROM changes WHERE n > 1 AND seq >= $1`
	args = []any{from}
	if audience != "" {
		q += ` AND audience = $2`
		args = append(args, audience)
	}
	q += ` ORDER BY seq`
	if err := each(q, args, func(r *membership.HistoryRow) (bool, error) {
		seq, err := r.Find(profileID)
		if err != nil {
			return false, err
		}
		if seq > after {
			bulk = append(bulk, r.Change(seq, profileID))
		}
		return len(bulk) < limit, nil
	}); err != nil {
		return nil, err
	}
	out = append(out, bulk...)
	slices.SortFunc(out, func(a, b kith.MembershipChange) int { return cmp.Compare(a.Seq, b.Seq) })
	return out[:min(len(out), limit)], nil
}

// AudienceNetChanges implements kith.AudienceStore.
func (db *DB) AudienceNetChanges(ctx context.Context, audience string, since time.Time) (map[string]int64, error) {
	rows, err := db.audR.QueryContext(ctx, `SELECT date(at / 1000000, 'unixepoch'), sum(CASE WHEN entered THEN n ELSE -n END)
		FROM changes WHERE audience = $1 AND at >= $2 GROUP BY 1`, audience, micros(since))
	if err != nil {
		return nil, fmt.Errorf("sqlite: audience net changes: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var day string
		var n int64
		if err := rows.Scan(&day, &n); err != nil {
			return nil, fmt.Errorf("sqlite: audience net changes: %w", err)
		}
		out[day] = n
	}
	return out, rows.Err()
}

// writeTraitChanges appends to the trait change stream.
func writeTraitChanges(ctx context.Context, tx *sql.Tx, chs []kith.TraitChange) error {
	if len(chs) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO trait_changes (profile_id, key, value, provenance, at, cause_seq) VALUES ($1,$2,$3,$4,$5,$6)`)
	if err != nil {
		return fmt.Errorf("trait changes: %w", err)
	}
	defer st.Close()
	set, err := tx.PrepareContext(ctx, `INSERT INTO trait_values (profile_id, key, value) VALUES ($1,$2,$3)
		ON CONFLICT (profile_id, key) DO UPDATE SET value = excluded.value`)
	if err != nil {
		return fmt.Errorf("trait values: %w", err)
	}
	defer set.Close()
	for _, c := range chs {
		v := []byte(c.Value)
		if len(v) == 0 {
			v = []byte("null")
		}
		if _, err := st.ExecContext(ctx, c.ProfileID, c.Key, v, c.Provenance, micros(c.At), c.CauseSeq); err != nil {
			return fmt.Errorf("trait change of %q: %w", c.ProfileID, err)
		}
		if string(v) == "null" {
			_, err = tx.ExecContext(ctx, `DELETE FROM trait_values WHERE profile_id = $1 AND key = $2`, c.ProfileID, c.Key)
		} else {
			_, err = set.ExecContext(ctx, c.ProfileID, c.Key, v)
		}
		if err != nil {
			return fmt.Errorf("trait value of %q: %w", c.ProfileID, err)
		}
	}
	return nil
}

// LoadTraitValues implements kith.AudienceStore.
func (db *DB) LoadTraitValues(ctx context.Context, ids []string) (map[string]map[string]json.RawMessage, error) {
	out := map[string]map[string]json.RawMessage{}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		q := `SELECT profile_id, key, value FROM trait_values WHERE profile_id IN (` + placeholders(n, 1) + `)`
		rows, err := db.audR.QueryContext(ctx, q, anys(ids[:n], func(s string) any { return s })...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: trait values: %w", err)
		}
		for rows.Next() {
			var id, key string
			var v []byte
			if err := rows.Scan(&id, &key, &v); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: trait values: %w", err)
			}
			if out[id] == nil {
				out[id] = map[string]json.RawMessage{}
			}
			out[id][key] = json.RawMessage(v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("sqlite: trait values: %w", err)
		}
		ids = ids[n:]
	}
	return out, nil
}

// TraitChanges implements kith.AudienceStore.
func (db *DB) TraitChanges(ctx context.Context, after int64, limit int) ([]kith.TraitChange, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := db.audR.QueryContext(ctx, `SELECT seq, profile_id, key, value, provenance, at, cause_seq FROM trait_changes
		WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: trait changes: %w", err)
	}
	defer rows.Close()
	var out []kith.TraitChange
	for rows.Next() {
		var (
			c     kith.TraitChange
			value []byte
			at    int64
		)
		if err := rows.Scan(&c.Seq, &c.ProfileID, &c.Key, &value, &c.Provenance, &at, &c.CauseSeq); err != nil {
			return nil, fmt.Errorf("sqlite: trait changes: %w", err)
		}
		c.Value, c.At = json.RawMessage(value), fromMicros(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: trait changes: %w", err)
	}
	return out, nil
}

// TraitChangeHead implements kith.AudienceStore.
func (db *DB) TraitChangeHead(ctx context.Context) (int64, error) {
	var head int64
	if err := db.audR.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'trait_changes'), 0)`).Scan(&head); err != nil {
		return 0, fmt.Errorf("sqlite: trait change head: %w", err)
	}
	return head, nil
}
