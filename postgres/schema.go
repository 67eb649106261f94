package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations is the schema history, in order. Each entry runs once, in its
// own transaction, and is recorded in schema_migrations by its 1-based
// position; never edit an applied entry, append a new one.
//
// Schema rules: keys and index prefixes hold no personal
// data (identifiers are keyed by their 16-byte keyed hash; e-mail and phone
// values live only in rows); there are no foreign keys between tables, so a
// company can distribute the large tables (events, message_ids, timeline,
// traits, identifiers) with Citus; typed columns sit beside the raw JSON so
// aggregates never parse JSON.
var migrations = []string{
	// 1: the ack path. events is the append-only log; seq comes from an
	// identity column and is assigned under an advisory lock so that seq
	// order is commit order. raw is json, not jsonb: it keeps the bytes the
	// collector produced and still supports -> and ->>.
	`
CREATE TABLE events (
	seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	source_id    text NOT NULL,
	message_id   text NOT NULL,
	type         text NOT NULL,
	event        text NOT NULL,
	user_id      text NOT NULL,
	anonymous_id text NOT NULL,
	ts           timestamptz NOT NULL,
	received_at  timestamptz NOT NULL,
	revenue      double precision,
	raw          json NOT NULL
);

CREATE TABLE message_ids (
	source_id   text NOT NULL,
	message_id  text NOT NULL,
	received_at timestamptz NOT NULL,
	PRIMARY KEY (source_id, message_id)
);
CREATE INDEX message_ids_received_at ON message_ids (received_at);

CREATE TABLE counters (
	source_id text NOT NULL,
	name      text NOT NULL,
	value     bigint NOT NULL,
	PRIMARY KEY (source_id, name)
);
`,
	// 2: the derived state the indexer maintains.
	`
CREATE TABLE index_cursor (
	id  integer PRIMARY KEY CHECK (id = 1),
	seq bigint NOT NULL
);
INSERT INTO index_cursor (id, seq) VALUES (1, 0);

CREATE TABLE profiles (
	id           text PRIMARY KEY,
	canonical_id text NOT NULL,
	created_at   timestamptz NOT NULL
);
CREATE INDEX profiles_canonical_id ON profiles (canonical_id);

CREATE TABLE identifiers (
	key        bytea PRIMARY KEY,
	type       text NOT NULL,
	value      text NOT NULL,
	profile_id text NOT NULL,
	source_id  text NOT NULL,
	message_id text NOT NULL,
	first_seen timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL
);
CREATE INDEX identifiers_profile_id ON identifiers (profile_id);

CREATE TABLE merges (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	survivor   text NOT NULL,
	absorbed   text NOT NULL,
	source_id  text NOT NULL,
	message_id text NOT NULL,
	ident_type text NOT NULL,
	ident      text NOT NULL,
	at         timestamptz NOT NULL
);
CREATE INDEX merges_absorbed ON merges (absorbed);

CREATE TABLE traits (
	profile_id text NOT NULL,
	key        text NOT NULL,
	value      json NOT NULL,
	source_id  text NOT NULL,
	message_id text NOT NULL,
	event_time timestamptz NOT NULL,
	PRIMARY KEY (profile_id, key)
);

CREATE TABLE timeline (
	profile_id text NOT NULL,
	ts         timestamptz NOT NULL,
	seq        bigint NOT NULL,
	type       text NOT NULL,
	event      text NOT NULL,
	PRIMARY KEY (profile_id, ts, seq)
);
`,
	// 3: configuration: sources, admin tokens, installation settings.
	`
CREATE TABLE sources (
	id         text PRIMARY KEY,
	name       text NOT NULL,
	disabled   boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL,
	key_hash   bytea NOT NULL UNIQUE
);

CREATE TABLE tokens (
	id         text PRIMARY KEY,
	name       text NOT NULL,
	scopes     text[] NOT NULL,
	created_at timestamptz NOT NULL,
	hash       bytea NOT NULL UNIQUE
);

CREATE TABLE settings (
	name  text PRIMARY KEY,
	value bytea NOT NULL
);
`,
	// 4: insights. orders holds Order Completed events typed for the
	// models (items as jsonb), distributed like timeline by profile_id. The
	// derived state is emptied so the indexer re-derives it from the log
	// and every order already indexed gets its row. insight_runs and
	// profile_insights hold what runs computed; they are not derived from
	// the log and are kept.
	`
CREATE TABLE orders (
	profile_id text NOT NULL,
	ts         timestamptz NOT NULL,
	seq        bigint NOT NULL,
	source_id  text NOT NULL,
	order_id   text NOT NULL,
	revenue    double precision NOT NULL,
	currency   text NOT NULL,
	items      jsonb NOT NULL,
	PRIMARY KEY (profile_id, ts, seq)
);
TRUNCATE profiles, identifiers, merges, traits, timeline;
DELETE FROM counters WHERE name = 'processed';
UPDATE index_cursor SET seq = 0;

CREATE TABLE insight_runs (
	id          text PRIMARY KEY,
	status      text NOT NULL,
	trigger     text NOT NULL,
	started_at  timestamptz NOT NULL,
	finished_at timestamptz,
	error       text NOT NULL,
	report      jsonb
);
CREATE INDEX insight_runs_started_at ON insight_runs (started_at);

CREATE TABLE profile_insights (
	profile_id text PRIMARY KEY,
	run_id     text NOT NULL,
	at         timestamptz NOT NULL,
	traits     jsonb NOT NULL
);
`,
	// 5: splits (undone merges): decisions an admin took, kept apart from
	// the derived state; re-deriving applies them.
	`
CREATE TABLE splits (
	id       text PRIMARY KEY,
	survivor text NOT NULL,
	absorbed text NOT NULL,
	merge    jsonb NOT NULL,
	by_token text NOT NULL,
	reason   text NOT NULL,
	at       timestamptz NOT NULL
);
`,
	// 6: identity decisions: links (merges without a linking event) and
	// probabilistic matching's review queue.
	`
CREATE TABLE links (
	id       text PRIMARY KEY,
	a        text NOT NULL,
	b        text NOT NULL,
	kind     text NOT NULL,
	weight   double precision NOT NULL,
	evidence jsonb,
	by_token text NOT NULL,
	reason   text NOT NULL,
	at_seq   bigint NOT NULL,
	at       timestamptz NOT NULL
);

CREATE TABLE review_items (
	id          text PRIMARY KEY,
	pair        text NOT NULL UNIQUE,
	a           text NOT NULL,
	b           text NOT NULL,
	probability double precision NOT NULL,
	weight      double precision NOT NULL,
	evidence    jsonb,
	run_id      text NOT NULL,
	status      text NOT NULL,
	created_at  timestamptz NOT NULL,
	decided_at  timestamptz,
	decided_by  text NOT NULL DEFAULT '',
	reason      text NOT NULL DEFAULT ''
);
CREATE INDEX review_items_status ON review_items (status, created_at);
`,
	// 7: detachments (identifiers removed from profiles by an admin).
	`
CREATE TABLE detachments (
	id       text PRIMARY KEY,
	key      bytea NOT NULL,
	type     text NOT NULL,
	profile  text NOT NULL,
	by_token text NOT NULL,
	reason   text NOT NULL,
	at       timestamptz NOT NULL
);
`,
	// 8: audiences and computed traits. audience_definitions holds them as
	// the user saved them (one JSON document each, json rather than jsonb
	// so a condition reads back byte for byte); the other tables hold what
	// the audience engine derived, none of it rebuilt with the indexer's
	// derived state. audience_profiles has a row per profile the engine
	// keeps anything for: its state and its memberships (one bytea, see
	// appendMember), so that an entry or exit rewrites one row, and an
	// ordinal from audience_profile_ords, never reused, by which the
	// member lists name it. A member list is a set of ordinals in chunks
	// of 4096 (see bitmap.encode), with its size beside it. The history
	// has a row per change, or per bulk change covering n consecutive seqs
	// with the profile ids front-coded (see encodeIDs); seqs are given by
	// the appliers under an advisory lock, so seq order is commit order.
	// Key columns use the "C" collation so that comparisons are byte
	// comparisons, as in the embedded store, whatever the database's
	// locale. No foreign keys, so the large tables can be distributed.
	`
CREATE TABLE audience_definitions (
	kind text COLLATE "C" NOT NULL,
	key  text COLLATE "C" NOT NULL,
	body json NOT NULL,
	PRIMARY KEY (kind, key)
);

CREATE TABLE audience_meta (
	name  text PRIMARY KEY,
	value bigint NOT NULL
);

CREATE SEQUENCE audience_profile_ords;

CREATE TABLE audience_profiles (
	ord        bigint PRIMARY KEY,
	profile_id text COLLATE "C" NOT NULL UNIQUE,
	members    bytea,
	state      bytea
);

CREATE TABLE audience_member_chunks (
	audience text COLLATE "C" NOT NULL,
	chunk    bigint NOT NULL,
	bits     bytea NOT NULL,
	PRIMARY KEY (audience, chunk)
);

CREATE TABLE audience_sizes (
	audience text COLLATE "C" PRIMARY KEY,
	n        bigint NOT NULL
);

CREATE TABLE audience_changes (
	seq         bigint PRIMARY KEY,
	n           integer NOT NULL,
	audience    text COLLATE "C" NOT NULL,
	profile_id  text COLLATE "C",
	profile_ids bytea,
	entered     boolean NOT NULL,
	at          timestamptz NOT NULL,
	cause       text NOT NULL,
	cause_seq   bigint NOT NULL
);
CREATE INDEX audience_changes_audience ON audience_changes (audience, seq);
CREATE INDEX audience_changes_profile ON audience_changes (profile_id, seq) WHERE profile_id IS NOT NULL;
CREATE INDEX audience_changes_bulk ON audience_changes (seq) WHERE n > 1;
`,
	// 9: third-party (DMP) audiences, matched to identifier keys (the
	// distribution column), kept apart from the derived state.
	`
CREATE TABLE dmp_audiences (
	key         bytea NOT NULL,
	partner     text COLLATE "C" NOT NULL,
	audience    text COLLATE "C" NOT NULL,
	id_type     text COLLATE "C" NOT NULL,
	expires_at  timestamptz NOT NULL,
	imported_at timestamptz NOT NULL,
	PRIMARY KEY (key, partner, audience)
);
CREATE INDEX dmp_audiences_expiry ON dmp_audiences (expires_at);
`,
	// 10: the audit log of admin actions, appended to and never changed.
	`
CREATE TABLE audit_log (
	seq        bigserial PRIMARY KEY,
	at         timestamptz NOT NULL,
	token_id   text NOT NULL,
	token_name text NOT NULL,
	action     text NOT NULL,
	target     text NOT NULL,
	status     integer NOT NULL,
	outcome    text NOT NULL
);
`,
	// 11: erasure requests (identifier type and keyed hash only) and the
	// keyed hashes of suppressed identifiers.
	`
CREATE TABLE erasures (
	id         text PRIMARY KEY,
	created_at timestamptz NOT NULL,
	body       jsonb NOT NULL
);
CREATE TABLE suppressions (
	key bytea PRIMARY KEY,
	at  timestamptz NOT NULL
);
`,
	// 12: consent decisions the events carried, with their history
	// (events indexed before this migration are not re-derived: their
	// decisions appear once a profile is re-derived, by an unmerge or a
	// rebuild).
	`
CREATE TABLE consents (
	profile_id text COLLATE "C" NOT NULL,
	seq        bigint NOT NULL,
	category   text NOT NULL,
	granted    boolean NOT NULL,
	at         timestamptz NOT NULL,
	source_id  text NOT NULL,
	message_id text NOT NULL,
	PRIMARY KEY (profile_id, seq, category)
);
`,
	// 13: suppressed events have a counter of their own; they were counted
	// as the rejection reason "suppressed" although they are not rejected.
	`UPDATE counters SET name = 'suppressed' WHERE name = 'rejected:suppressed'`,
	// 14: destinations, their progress and their deliveries. A
	// destination's settings are one JSON document (kith.Destination
	// without the columns beside it), so a new setting needs no
	// migration; config holds secrets, stored as given (bytea: the bytes
	// the API passed). Its progress and delivered counter are in its row
	// (the row an advance locks), filtered counts by reason beside it.
	// Deliveries are keyed by destination and ID (upserts and deletes by
	// ID); the second index serves the pages of retrying or dead-lettered
	// deliveries by ID and counting them, and all of a destination's rows
	// are a range of either. Key columns use the "C" collation, so pages
	// and lists are in byte order as in the embedded store; no foreign
	// keys, so destination_deliveries can be distributed by
	// destination_id.
	`
CREATE TABLE destinations (
	id         text COLLATE "C" PRIMARY KEY,
	name       text COLLATE "C" NOT NULL UNIQUE,
	config     bytea,
	body       json NOT NULL,
	created_at timestamptz NOT NULL,
	log_seq    bigint NOT NULL,
	change_seq bigint NOT NULL,
	delivered  bigint NOT NULL DEFAULT 0
);
CREATE TABLE destination_filtered (
	destination_id text COLLATE "C" NOT NULL,
	reason         text COLLATE "C" NOT NULL,
	value          bigint NOT NULL,
	PRIMARY KEY (destination_id, reason)
);
CREATE TABLE destination_deliveries (
	destination_id text COLLATE "C" NOT NULL,
	id             text COLLATE "C" NOT NULL,
	key            text COLLATE "C" NOT NULL,
	seq            bigint NOT NULL,
	kind           text NOT NULL,
	body           bytea,
	attempts       integer NOT NULL,
	first_at       timestamptz NOT NULL,
	next_at        timestamptz NOT NULL,
	last_status    integer NOT NULL,
	last_error     text NOT NULL,
	dead           boolean NOT NULL,
	PRIMARY KEY (destination_id, id)
);
CREATE INDEX destination_deliveries_dead ON destination_deliveries (destination_id, dead, id);
`,
	// 15: which profiles each destination received data about, so that
	// erasing a person sends a deletion to those that had them; keyed by
	// profile first (an erasure asks by profile), opaque ids only. The
	// deliveries get an index by key, so that an erasure finds a
	// person's deliveries without reading a destination's whole backlog.
	`
CREATE TABLE destination_recipients (
	profile_id     text COLLATE "C" NOT NULL,
	destination_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (profile_id, destination_id)
);
CREATE INDEX destination_deliveries_key ON destination_deliveries (destination_id, key, seq);
`,
	// 16: a destination's positions beyond the log and the audience
	// changes (kith.DestinationProgress.Extra): in the trait change
	// stream, in sending its audiences' members when it subscribed, and
	// in a replay of a stretch of the log; a row only while one is not
	// zero.
	`
CREATE TABLE destination_positions (
	destination_id text COLLATE "C" PRIMARY KEY,
	trait_seq      bigint NOT NULL,
	audience       integer NOT NULL,
	after          text COLLATE "C" NOT NULL,
	replay_at      bigint NOT NULL,
	replay_to      bigint NOT NULL,
	replay_id      bigint NOT NULL
);
`,
	// 17: the trait change stream (kith.TraitChange). Seqs come from a
	// sequence taken under the audience batch lock, so seq order is
	// commit order, and one erasure deleted is never given again.
	`
CREATE SEQUENCE trait_change_seqs;
CREATE TABLE trait_changes (
	seq        bigint PRIMARY KEY,
	profile_id text COLLATE "C" NOT NULL,
	key        text COLLATE "C" NOT NULL,
	value      text NOT NULL,
	provenance text NOT NULL,
	at         timestamptz NOT NULL,
	cause_seq  bigint NOT NULL
);
CREATE INDEX trait_changes_profile ON trait_changes (profile_id);
`,
	// 18: the last value of each tracked trait recorded in
	// trait_changes, written with it (kith.AudienceStore.LoadTraitValues).
	`
CREATE TABLE trait_values (
	profile_id text COLLATE "C" NOT NULL,
	key        text COLLATE "C" NOT NULL,
	value      text NOT NULL,
	PRIMARY KEY (profile_id, key)
);
`,
}

// migrate applies the migrations that have not run yet. Each runs in its
// own transaction under an advisory lock, so several processes starting at
// once apply each migration exactly once.
func (db *DB) migrate(ctx context.Context) error {
	for i, m := range migrations {
		version := i + 1
		err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, lockSQL, lockMigrate); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version    integer PRIMARY KEY,
				applied_at timestamptz NOT NULL DEFAULT now()
			)`); err != nil {
				return fmt.Errorf("create schema_migrations: %w", err)
			}
			var applied, newest int
			if err := tx.QueryRow(ctx, `SELECT count(*) FILTER (WHERE version = $1), coalesce(max(version), 0) FROM schema_migrations`, version).Scan(&applied, &newest); err != nil {
				return fmt.Errorf("read schema_migrations: %w", err)
			}
			if newest > len(migrations) {
				return fmt.Errorf("database schema version %d is newer than this binary's %d", newest, len(migrations))
			}
			if applied > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, m); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %d: %w", version, err)
		}
	}
	return nil
}
