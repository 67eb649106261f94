package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kithcdp/kith"
)

// membersSQL selects the ids of the profiles that resolve to the same
// canonical profile as $1 (the canonical one included).
const membersSQL = `SELECT id FROM profiles WHERE canonical_id = (SELECT canonical_id FROM profiles WHERE id = $1)`

// IndexCursor implements kith.ProfileStore.
func (db *DB) IndexCursor(ctx context.Context) (int64, error) {
	var seq int64
	if err := db.pool.QueryRow(ctx, `SELECT seq FROM index_cursor WHERE id = 1`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("postgres: index cursor: %w", err)
	}
	return seq, nil
}

// ApplyIndexBatch implements kith.ProfileStore. Everything is sent as one
// pipelined batch inside a transaction whose first statement moves the
// cursor from `from` to b.Cursor; if the cursor was elsewhere, the
// transaction is rolled back and the error is ECONFLICT.
func (db *DB) ApplyIndexBatch(ctx context.Context, from int64, b kith.IndexBatch) error {
	return refusedData(db.applyIndexBatch(ctx, from, b))
}

func (db *DB) applyIndexBatch(ctx context.Context, from int64, b kith.IndexBatch) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: apply index batch: begin: %w", err)
	}
	defer rollback(ctx, tx)

	var (
		batch pgx.Batch
		steps []string // what each queued statement does, for errors
	)
	queue := func(step, sql string, args ...any) {
		batch.Queue(sql, args...)
		steps = append(steps, step)
	}
	queue("cursor", `UPDATE index_cursor SET seq = $2 WHERE id = 1 AND seq = $1`, from, b.Cursor)

	if err := queueRows(queue, b); err != nil {
		return err
	}

	processed := map[string]map[string]int64{}
	for source, n := range b.Processed {
		processed[source] = map[string]int64{counterProcessed: n}
	}
	if sql, args, ok := countersUpsert(processed); ok {
		queue("processed counters", sql, args...)
	}

	results := tx.SendBatch(ctx, &batch)
	tag, err := results.Exec()
	if err != nil {
		results.Close()
		return fmt.Errorf("postgres: apply index batch: cursor: %w", err)
	}
	if tag.RowsAffected() != 1 {
		results.Close()
		return kith.Errorf(kith.ECONFLICT, "index cursor moved: batch was derived from %d", from)
	}
	for _, step := range steps[1:] {
		if _, err := results.Exec(); err != nil {
			results.Close()
			return fmt.Errorf("postgres: apply index batch: %s: %w", step, err)
		}
	}
	if err := results.Close(); err != nil {
		return fmt.Errorf("postgres: apply index batch: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: apply index batch: commit: %w", err)
	}
	return nil
}

// column extracts one field of rows into a slice: an unnest() argument.
func column[R, T any](rows []R, field func(R) T) []T {
	out := make([]T, len(rows))
	for i, r := range rows {
		out[i] = field(r)
	}
	return out
}

// coalesceIdentifiers folds repeated keys of one batch into one upsert, as
// applying them one after another would: the first attachment's profile
// and provenance stay, the seen window widens.
func coalesceIdentifiers(in []kith.IdentifierUpsert) []kith.IdentifierUpsert {
	out := make([]kith.IdentifierUpsert, 0, len(in))
	index := make(map[kith.IdentKey]int, len(in))
	for _, u := range in {
		i, ok := index[u.Key]
		if !ok {
			index[u.Key] = len(out)
			out = append(out, u)
			continue
		}
		if u.FirstSeen.Before(out[i].FirstSeen) {
			out[i].FirstSeen = u.FirstSeen
		}
		if u.LastSeen.After(out[i].LastSeen) {
			out[i].LastSeen = u.LastSeen
		}
	}
	return out
}

// coalesceTraits keeps, per profile and key, the upsert that would win if
// they were applied one after another: the latest event time, and among
// equal times the later one.
func coalesceTraits(in []kith.TraitUpsert) []kith.TraitUpsert {
	type key struct{ profile, key string }
	out := make([]kith.TraitUpsert, 0, len(in))
	index := make(map[key]int, len(in))
	for _, u := range in {
		k := key{u.ProfileID, u.Key}
		i, ok := index[k]
		if !ok {
			index[k] = len(out)
			out = append(out, u)
			continue
		}
		if !u.EventTime.Before(out[i].EventTime) {
			out[i] = u
		}
	}
	return out
}

// LookupIdentifiers implements kith.ProfileStore.
func (db *DB) LookupIdentifiers(ctx context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error) {
	out := make(map[kith.IdentKey]kith.IdentOwner, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	raw := make([][]byte, len(keys))
	for i := range keys {
		raw[i] = keys[i][:]
	}
	// A join on unnest, not "key = ANY($1)": with thousands of keys a
	// generic plan may filter a sequential scan through the whole array
	// per row, which took seconds per batch.
	rows, err := db.pool.Query(ctx, `
		SELECT i.key, i.profile_id, coalesce(p.canonical_id, i.profile_id)
		FROM unnest($1::bytea[]) AS k(key)
		JOIN identifiers i ON i.key = k.key
		LEFT JOIN profiles p ON p.id = i.profile_id`, raw)
	if err != nil {
		return nil, fmt.Errorf("postgres: lookup identifiers: %w", err)
	}
	var (
		key   []byte
		owner kith.IdentOwner
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &owner.ProfileID, &owner.Canonical}, func() error {
		var k kith.IdentKey
		if len(key) != len(k) {
			return fmt.Errorf("identifier key of %d bytes", len(key))
		}
		copy(k[:], key)
		out[k] = owner
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: lookup identifiers: %w", err)
	}
	return out, nil
}

// Canonical implements kith.ProfileStore.
func (db *DB) Canonical(ctx context.Context, profileID string) (string, error) {
	var id string
	err := db.pool.QueryRow(ctx, `SELECT canonical_id FROM profiles WHERE id = $1`, profileID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", kith.Errorf(kith.ENOTFOUND, "profile %q not found", profileID)
	} else if err != nil {
		return "", fmt.Errorf("postgres: canonical: %w", err)
	}
	return id, nil
}

// Profile implements kith.ProfileStore. An id that has been merged into
// another profile yields the summary of the profile it resolves to.
func (db *DB) Profile(ctx context.Context, canonicalID string) (kith.ProfileSummary, error) {
	var (
		s               kith.ProfileSummary
		firstAt, lastAt *time.Time
	)
	err := db.pool.QueryRow(ctx, `
		WITH m AS (`+membersSQL+`)
		SELECT p.id, p.created_at,
			(SELECT array_agg(id) FROM m),
			(SELECT count(*) FROM identifiers WHERE profile_id = ANY(ARRAY(SELECT id FROM m))),
			(SELECT count(DISTINCT key) FROM traits WHERE profile_id = ANY(ARRAY(SELECT id FROM m))),
			t.n, t.first_at, t.last_at
		FROM profiles p,
			(SELECT count(*) AS n, min(ts) AS first_at, max(ts) AS last_at
			 FROM timeline WHERE profile_id = ANY(ARRAY(SELECT id FROM m))) t
		WHERE p.id = (SELECT canonical_id FROM profiles WHERE id = $1)`, canonicalID).
		Scan(&s.ID, &s.CreatedAt, &s.Members, &s.Identifiers, &s.Traits, &s.Events, &firstAt, &lastAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return kith.ProfileSummary{}, kith.Errorf(kith.ENOTFOUND, "profile %q not found", canonicalID)
	} else if err != nil {
		return kith.ProfileSummary{}, fmt.Errorf("postgres: profile: %w", err)
	}
	s.CreatedAt = s.CreatedAt.UTC()
	slices.Sort(s.Members) // byte order, whatever the database collation
	if firstAt != nil {
		s.FirstEventAt = firstAt.UTC()
	}
	if lastAt != nil {
		s.LastEventAt = lastAt.UTC()
	}
	return s, nil
}

// Traits implements kith.ProfileStore: for each key, the value with the
// latest event time among the members, sorted by key.
func (db *DB) Traits(ctx context.Context, canonicalID string) ([]kith.Trait, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT key, value, profile_id, source_id, message_id, event_time
		FROM traits WHERE profile_id = ANY(ARRAY(`+membersSQL+`))
		ORDER BY key, event_time DESC, profile_id`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("postgres: traits: %w", err)
	}
	traits, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Trait, error) {
		var (
			t     kith.Trait
			value []byte
		)
		err := row.Scan(&t.Key, &value, &t.ProfileID, &t.SourceID, &t.MessageID, &t.EventTime)
		t.Value = value
		t.EventTime = t.EventTime.UTC()
		t.Provenance = kith.ProvenanceEvent
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: traits: %w", err)
	}
	// Byte order, whatever the database collation; then the latest value
	// per key, with the other members' older values kept beside it.
	slices.SortStableFunc(traits, func(a, b kith.Trait) int { return strings.Compare(a.Key, b.Key) })
	folded := traits[:0]
	for _, t := range traits {
		if n := len(folded); n > 0 && folded[n-1].Key == t.Key {
			folded[n-1].Others = append(folded[n-1].Others, t)
			continue
		}
		folded = append(folded, t)
	}
	traits = folded
	predicted, err := db.predictedTraits(ctx, canonicalID)
	if err != nil {
		return nil, err
	}
	return kith.WithPredicted(traits, predicted), nil
}

// Identities implements kith.ProfileStore: the identifiers of all members,
// oldest first.
func (db *DB) Identities(ctx context.Context, canonicalID string) ([]kith.Identity, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT type, value, profile_id, source_id, message_id, first_seen, last_seen
		FROM identifiers WHERE profile_id = ANY(ARRAY(`+membersSQL+`))
		ORDER BY first_seen, key`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("postgres: identities: %w", err)
	}
	ids, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Identity, error) {
		var i kith.Identity
		err := row.Scan(&i.Type, &i.Value, &i.ProfileID, &i.SourceID, &i.MessageID, &i.FirstSeen, &i.LastSeen)
		i.FirstSeen, i.LastSeen = i.FirstSeen.UTC(), i.LastSeen.UTC()
		return i, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: identities: %w", err)
	}
	return ids, nil
}

// Merges implements kith.ProfileStore: every merge that absorbed one of
// the members, in the order they were applied.
func (db *DB) Merges(ctx context.Context, canonicalID string) ([]kith.Merge, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT id, survivor, absorbed, source_id, message_id, ident_type, ident, at
		FROM merges WHERE absorbed = ANY(ARRAY(`+membersSQL+`))
		ORDER BY id`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("postgres: merges: %w", err)
	}
	merges, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Merge, error) {
		var m kith.Merge
		var id int64
		err := row.Scan(&id, &m.Survivor, &m.Absorbed, &m.SourceID, &m.MessageID, &m.IdentType, &m.Ident, &m.At)
		m.At = m.At.UTC()
		m.ID = fmt.Sprintf("m_%d", id)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: merges: %w", err)
	}
	return merges, nil
}

// Timeline implements kith.ProfileStore: the union of the members'
// timelines, newest first. With a Limit, each member's rows are read
// through its (profile_id, ts, seq) key in descending order and cut at the
// limit before the union is merged, so a page costs Limit rows per member
// rather than the whole history. A Limit of zero or less returns every
// matching entry.
func (db *DB) Timeline(ctx context.Context, canonicalID string, q kith.TimelineQuery) ([]kith.TimelineEntry, error) {
	args := []any{canonicalID}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	where := "t.profile_id = m.id"
	if !q.Start.IsZero() {
		where += " AND t.ts >= " + arg(q.Start)
	}
	if !q.End.IsZero() {
		where += " AND t.ts < " + arg(q.End)
	}
	if q.Type != "" {
		where += " AND t.type = " + arg(q.Type)
	}
	if q.Event != "" {
		where += " AND t.event = " + arg(q.Event)
	}
	if q.Before != nil {
		where += fmt.Sprintf(" AND (t.ts, t.seq) < (%s, %s)", arg(q.Before.Timestamp), arg(q.Before.Seq))
	}
	limit := ""
	if q.Limit > 0 {
		limit = " LIMIT " + arg(q.Limit)
	}
	sql := `
		SELECT x.profile_id, x.ts, x.seq, x.type, x.event
		FROM (` + membersSQL + `) m,
		LATERAL (
			SELECT t.profile_id, t.ts, t.seq, t.type, t.event FROM timeline t
			WHERE ` + where + `
			ORDER BY t.ts DESC, t.seq DESC` + limit + `
		) x
		ORDER BY x.ts DESC, x.seq DESC` + limit
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: timeline: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.TimelineEntry, error) {
		var e kith.TimelineEntry
		err := row.Scan(&e.ProfileID, &e.Timestamp, &e.Seq, &e.Type, &e.Event)
		e.Timestamp = e.Timestamp.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: timeline: %w", err)
	}
	return entries, nil
}

// queueRows queues the statements that insert a batch's derived rows (not
// its cursor or counts).
func queueRows(queue func(step, sql string, args ...any), b kith.IndexBatch) error {
	if ps := b.Profiles; len(ps) > 0 {
		queue("profiles", `
			INSERT INTO profiles (id, canonical_id, created_at)
			SELECT id, id, created_at FROM unnest($1::text[], $2::timestamptz[]) AS u(id, created_at)
			ON CONFLICT (id) DO NOTHING`,
			column(ps, func(p kith.NewProfile) string { return p.ID }),
			column(ps, func(p kith.NewProfile) time.Time { return p.CreatedAt }))
	}

	if us := coalesceIdentifiers(b.Identifiers); len(us) > 0 {
		queue("identifiers", `
			INSERT INTO identifiers (key, type, value, profile_id, source_id, message_id, first_seen, last_seen)
			SELECT * FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[])
			ON CONFLICT (key) DO UPDATE SET
				first_seen = least(identifiers.first_seen, excluded.first_seen),
				last_seen = greatest(identifiers.last_seen, excluded.last_seen)`,
			column(us, func(u kith.IdentifierUpsert) []byte { return u.Key[:] }),
			column(us, func(u kith.IdentifierUpsert) string { return u.Type }),
			column(us, func(u kith.IdentifierUpsert) string { return u.Value }),
			column(us, func(u kith.IdentifierUpsert) string { return u.ProfileID }),
			column(us, func(u kith.IdentifierUpsert) string { return u.SourceID }),
			column(us, func(u kith.IdentifierUpsert) string { return u.MessageID }),
			column(us, func(u kith.IdentifierUpsert) time.Time { return u.FirstSeen }),
			column(us, func(u kith.IdentifierUpsert) time.Time { return u.LastSeen }))
	}

	// Merges in order. Both ends are resolved through the graph first, so a
	// merge naming an already absorbed profile still moves the whole group.
	for _, m := range b.Merges {
		queue("merge", `
			INSERT INTO merges (survivor, absorbed, source_id, message_id, ident_type, ident, at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			m.Survivor, m.Absorbed, m.SourceID, m.MessageID, m.IdentType, m.Ident, m.At)
		queue("merge", `
			UPDATE profiles
			SET canonical_id = coalesce((SELECT canonical_id FROM profiles WHERE id = $1), $1::text)
			WHERE canonical_id = coalesce((SELECT canonical_id FROM profiles WHERE id = $2), $2::text)`,
			m.Survivor, m.Absorbed)
	}

	if ts := coalesceTraits(b.Traits); len(ts) > 0 {
		queue("traits", `
			INSERT INTO traits (profile_id, key, value, source_id, message_id, event_time)
			SELECT profile_id, key, value::json, source_id, message_id, event_time
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
			     AS u(profile_id, key, value, source_id, message_id, event_time)
			ON CONFLICT (profile_id, key) DO UPDATE SET
				value = excluded.value, source_id = excluded.source_id,
				message_id = excluded.message_id, event_time = excluded.event_time
			WHERE excluded.event_time >= traits.event_time`,
			column(ts, func(u kith.TraitUpsert) string { return u.ProfileID }),
			column(ts, func(u kith.TraitUpsert) string { return u.Key }),
			column(ts, func(u kith.TraitUpsert) string { return string(u.Value) }),
			column(ts, func(u kith.TraitUpsert) string { return u.SourceID }),
			column(ts, func(u kith.TraitUpsert) string { return u.MessageID }),
			column(ts, func(u kith.TraitUpsert) time.Time { return u.EventTime }))
	}

	if es := b.Timeline; len(es) > 0 {
		// A replayed row is the same fact; keep the stored one.
		queue("timeline", `
			INSERT INTO timeline (profile_id, ts, seq, type, event)
			SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::text[], $5::text[])
			ON CONFLICT DO NOTHING`,
			column(es, func(e kith.TimelineEntry) string { return e.ProfileID }),
			column(es, func(e kith.TimelineEntry) time.Time { return e.Timestamp }),
			column(es, func(e kith.TimelineEntry) int64 { return e.Seq }),
			column(es, func(e kith.TimelineEntry) string { return e.Type }),
			column(es, func(e kith.TimelineEntry) string { return e.Event }))
	}

	if os := b.Orders; len(os) > 0 {
		items := make([]string, len(os))
		for i, o := range os {
			j, err := json.Marshal(orderItems(o.Items))
			if err != nil {
				return fmt.Errorf("postgres: apply index batch: order items: %w", err)
			}
			items[i] = string(j)
		}
		queue("orders", `
			INSERT INTO orders (profile_id, ts, seq, source_id, order_id, revenue, currency, items)
			SELECT profile_id, ts, seq, source_id, order_id, revenue, currency, items::jsonb
			FROM unnest($1::text[], $2::timestamptz[], $3::bigint[], $4::text[], $5::text[], $6::float8[], $7::text[], $8::text[])
			     AS u(profile_id, ts, seq, source_id, order_id, revenue, currency, items)
			ON CONFLICT DO NOTHING`,
			column(os, func(o kith.Order) string { return o.ProfileID }),
			column(os, func(o kith.Order) time.Time { return o.Timestamp }),
			column(os, func(o kith.Order) int64 { return o.Seq }),
			column(os, func(o kith.Order) string { return o.SourceID }),
			column(os, func(o kith.Order) string { return o.OrderID }),
			column(os, func(o kith.Order) float64 { return o.Revenue }),
			column(os, func(o kith.Order) string { return o.Currency }),
			items)
	}

	if cs := b.Consents; len(cs) > 0 {
		queue("consents", `
			INSERT INTO consents (profile_id, seq, category, granted, at, source_id, message_id)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::boolean[], $5::timestamptz[], $6::text[], $7::text[])
			ON CONFLICT DO NOTHING`,
			column(cs, func(c kith.Consent) string { return c.ProfileID }),
			column(cs, func(c kith.Consent) int64 { return c.Seq }),
			column(cs, func(c kith.Consent) string { return c.Category }),
			column(cs, func(c kith.Consent) bool { return c.Granted }),
			column(cs, func(c kith.Consent) time.Time { return c.At }),
			column(cs, func(c kith.Consent) string { return c.SourceID }),
			column(cs, func(c kith.Consent) string { return c.MessageID }))
	}

	return nil
}

// Consents implements kith.ProfileStore.
func (db *DB) Consents(ctx context.Context, canonicalID string) ([]kith.Consent, error) {
	if _, err := db.Canonical(ctx, canonicalID); err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, `SELECT profile_id, seq, category, granted, at, source_id, message_id FROM consents
		WHERE profile_id = ANY(ARRAY(`+membersSQL+`)) ORDER BY at, seq, category`, canonicalID)
	if err != nil {
		return nil, fmt.Errorf("postgres: consents: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Consent, error) {
		var c kith.Consent
		err := row.Scan(&c.ProfileID, &c.Seq, &c.Category, &c.Granted, &c.At, &c.SourceID, &c.MessageID)
		c.At = c.At.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: consents: %w", err)
	}
	return out, nil
}
