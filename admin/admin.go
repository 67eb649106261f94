// Package admin owns credentials: it creates sources with their write keys
// and admin tokens with their scopes, and stores only hashes of both, so a
// leaked database does not leak a working key. Secrets are shown once, at
// creation.
package admin

import (
	"context"
	"crypto/sha256"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/kithcdp/kith"
)

// SourceStore is what creating credentials needs from the store.
type SourceStore interface {
	CreateSource(ctx context.Context, s kith.Source) error
	CreateToken(ctx context.Context, t kith.Token) error
	TokenByHash(ctx context.Context, hash []byte) (kith.Token, error)
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$`)

// knownScopes are the scopes a token may be given.
var knownScopes = func() map[string]bool {
	m := map[string]bool{}
	for _, s := range kith.Scopes {
		m[s] = true
	}
	return m
}()

// Hash returns the stored form of a write key or token secret.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// CreateSource creates a source called name and returns it with its write
// key, which is not stored and cannot be shown again.
func CreateSource(ctx context.Context, store SourceStore, name string, now time.Time) (kith.Source, string, error) {
	name = strings.TrimSpace(name)
	if !namePattern.MatchString(name) {
		return kith.Source{}, "", kith.Errorf(kith.EINVALID, "source name must be 1-64 letters, digits, spaces, '_', '.' or '-', starting with a letter or digit")
	}
	key := kith.NewSecret("wk_")
	src := kith.Source{ID: kith.NewID("src_"), Name: name, CreatedAt: now.UTC().Truncate(time.Microsecond), KeyHash: Hash(key)}
	if err := store.CreateSource(ctx, src); err != nil {
		return kith.Source{}, "", fmt.Errorf("admin: create source: %w", err)
	}
	return src, key, nil
}

// CreateToken creates an admin token and returns it with its secret.
func CreateToken(ctx context.Context, store SourceStore, name string, scopes []string, now time.Time) (kith.Token, string, error) {
	name = strings.TrimSpace(name)
	if !namePattern.MatchString(name) {
		return kith.Token{}, "", kith.Errorf(kith.EINVALID, "token name must be 1-64 letters, digits, spaces, '_', '.' or '-'")
	}
	if len(scopes) == 0 {
		return kith.Token{}, "", kith.Errorf(kith.EINVALID, "a token needs at least one scope")
	}
	for _, sc := range scopes {
		if !knownScopes[sc] {
			return kith.Token{}, "", kith.Errorf(kith.EINVALID, "unknown scope %q", sc)
		}
	}
	secret := kith.NewSecret("kt_")
	t := kith.Token{ID: kith.NewID("tok_"), Name: name, Scopes: scopes, CreatedAt: now.UTC().Truncate(time.Microsecond), Hash: Hash(secret)}
	if err := store.CreateToken(ctx, t); err != nil {
		return kith.Token{}, "", fmt.Errorf("admin: create token: %w", err)
	}
	return t, secret, nil
}

// ProvisionToken makes sure secret is a valid token with every scope; it is
// how KITH_ADMIN_TOKEN bootstraps automation. It is idempotent.
func ProvisionToken(ctx context.Context, store SourceStore, secret string, now time.Time) error {
	if len(secret) < 8 {
		return kith.Errorf(kith.EINVALID, "the admin token must be at least 8 characters")
	}
	h := Hash(secret)
	if _, err := store.TokenByHash(ctx, h); err == nil {
		return nil
	} else if kith.ErrorCode(err) != kith.ENOTFOUND {
		return fmt.Errorf("admin: provision token: %w", err)
	}
	t := kith.Token{ID: kith.NewID("tok_"), Name: "provisioned", Scopes: []string{kith.ScopeAll}, CreatedAt: now.UTC().Truncate(time.Microsecond), Hash: h}
	if err := store.CreateToken(ctx, t); err != nil {
		return fmt.Errorf("admin: provision token: %w", err)
	}
	return nil
}
