package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kithcdp/kith"
)

// CreateSource implements kith.SourceStore. A source whose id or key hash
// already exists is an ECONFLICT.
func (db *DB) CreateSource(ctx context.Context, s kith.Source) error {
	_, err := db.pool.Exec(ctx, `
		INSERT INTO sources (id, name, disabled, created_at, key_hash) VALUES ($1, $2, $3, $4, $5)`,
		s.ID, s.Name, s.Disabled, s.CreatedAt, s.KeyHash)
	if isUniqueViolation(err) {
		return kith.Errorf(kith.ECONFLICT, "source %q or its write key already exists", s.ID)
	} else if err != nil {
		return fmt.Errorf("postgres: create source: %w", err)
	}
	return nil
}

// Sources implements kith.SourceStore, oldest first.
func (db *DB) Sources(ctx context.Context) ([]kith.Source, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, name, disabled, created_at, key_hash FROM sources ORDER BY created_at, id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("postgres: sources: %w", err)
	}
	sources, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Source, error) {
		var s kith.Source
		err := row.Scan(&s.ID, &s.Name, &s.Disabled, &s.CreatedAt, &s.KeyHash)
		s.CreatedAt = s.CreatedAt.UTC()
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: sources: %w", err)
	}
	return sources, nil
}

// SetSourceDisabled implements kith.SourceStore.
func (db *DB) SetSourceDisabled(ctx context.Context, id string, disabled bool) error {
	tag, err := db.pool.Exec(ctx, `UPDATE sources SET disabled = $2 WHERE id = $1`, id, disabled)
	if err != nil {
		return fmt.Errorf("postgres: set source disabled: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return kith.Errorf(kith.ENOTFOUND, "source %q not found", id)
	}
	return nil
}

// CreateToken implements kith.SourceStore. A token whose id or hash
// already exists is an ECONFLICT.
func (db *DB) CreateToken(ctx context.Context, t kith.Token) error {
	scopes := t.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	_, err := db.pool.Exec(ctx, `
		INSERT INTO tokens (id, name, scopes, created_at, hash) VALUES ($1, $2, $3, $4, $5)`,
		t.ID, t.Name, scopes, t.CreatedAt, t.Hash)
	if isUniqueViolation(err) {
		return kith.Errorf(kith.ECONFLICT, "token %q already exists", t.ID)
	} else if err != nil {
		return fmt.Errorf("postgres: create token: %w", err)
	}
	return nil
}

// TokenByHash implements kith.SourceStore.
func (db *DB) TokenByHash(ctx context.Context, hash []byte) (kith.Token, error) {
	var t kith.Token
	err := db.pool.QueryRow(ctx, `SELECT id, name, scopes, created_at, hash FROM tokens WHERE hash = $1`, hash).
		Scan(&t.ID, &t.Name, &t.Scopes, &t.CreatedAt, &t.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return kith.Token{}, kith.Errorf(kith.ENOTFOUND, "token not found")
	} else if err != nil {
		return kith.Token{}, fmt.Errorf("postgres: token by hash: %w", err)
	}
	t.CreatedAt = t.CreatedAt.UTC()
	return t, nil
}

// Secret implements kith.Store. The first caller stores 32 random bytes;
// a concurrent first caller, in this process or another, loses the insert
// and reads the winner's value with the next statement.
func (db *DB) Secret(ctx context.Context) ([]byte, error) {
	const read = `SELECT value FROM settings WHERE name = 'secret'`
	var secret []byte
	err := db.pool.QueryRow(ctx, read).Scan(&secret)
	if err == nil {
		return secret, nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: secret: %w", err)
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("postgres: secret: %w", err)
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO settings (name, value) VALUES ('secret', $1) ON CONFLICT (name) DO NOTHING`, fresh); err != nil {
		return nil, fmt.Errorf("postgres: secret: %w", err)
	}
	if err := db.pool.QueryRow(ctx, read).Scan(&secret); err != nil {
		return nil, fmt.Errorf("postgres: secret: %w", err)
	}
	return secret, nil
}

// Tokens implements kith.SourceStore.
func (db *DB) Tokens(ctx context.Context) ([]kith.Token, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, name, scopes, created_at, hash FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (kith.Token, error) {
		var t kith.Token
		err := row.Scan(&t.ID, &t.Name, &t.Scopes, &t.CreatedAt, &t.Hash)
		t.CreatedAt = t.CreatedAt.UTC()
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: tokens: %w", err)
	}
	return out, nil
}

// RevokeToken implements kith.SourceStore.
func (db *DB) RevokeToken(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM tokens WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("postgres: revoke token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return kith.Errorf(kith.ENOTFOUND, "no token %q", id)
	}
	return nil
}
