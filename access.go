package kith

import (
	"context"
	"time"
)

// Source is one channel that sends data (a webshop, an app, a POS, a CRM
// import). Only the hash of its write key is stored.
type Source struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"createdAt"`
	// KeyHash is SHA-256 of the write key; the key itself is shown once.
	KeyHash []byte `json:"-"`
}

// Token is an admin API credential. Only its hash is stored.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"createdAt"`
	Hash      []byte    `json:"-"`
}

// Scope names for admin tokens. ScopeAll and ScopeAdmin grant every scope
// (ScopeAdmin alone also manages tokens and the identity rules);
// ScopeSourcesAdmin grants both source scopes.
const (
	ScopeAll          = "*"
	ScopeAdmin        = "admin"
	ScopeSourcesAdmin = "sources:admin"
	ScopeSourcesWrite = "sources:write"
	ScopeSourcesRead  = "sources:read"
	ScopeProfilesRead = "profiles:read"
	// ScopeProfilesWrite changes profiles (unmerge).
	ScopeProfilesWrite = "profiles:write"
	ScopeStatsRead     = "stats:read"
	// ScopeInsightsRead lists insight runs and reports; ScopeInsightsWrite
	// starts runs.
	ScopeInsightsRead  = "insights:read"
	ScopeInsightsWrite = "insights:write"
	// ScopeDefinitionsWrite creates, changes and deletes audiences and
	// computed traits (reading them needs profiles:read).
	ScopeDefinitionsWrite = "definitions:write"
	// ScopeImportsWrite imports files (CRM, POS, e-mail exports) and DMP
	// audiences into sources.
	ScopeImportsWrite = "imports:write"
	// ScopePrivacyWrite erases people, exports what is held about them
	// and sets their consent.
	ScopePrivacyWrite = "privacy:write"
	// ScopeAuditRead reads the audit log.
	ScopeAuditRead = "audit:read"
	// ScopePIIRead shows traits declared personal (e-mail, phone, name,
	// address, birthday) in full on the profile API; without it they are
	// masked.
	ScopePIIRead = "pii:read"
)

// Scopes lists every scope a token may be given.
var Scopes = []string{ScopeAll, ScopeAdmin, ScopeSourcesAdmin, ScopeSourcesRead, ScopeSourcesWrite,
	ScopeProfilesRead, ScopeProfilesWrite, ScopeStatsRead, ScopeInsightsRead, ScopeInsightsWrite,
	ScopeDefinitionsWrite, ScopeImportsWrite, ScopePrivacyWrite, ScopeAuditRead, ScopePIIRead}

// HasScope reports whether the token grants scope.
func (t Token) HasScope(scope string) bool {
	for _, s := range t.Scopes {
		switch {
		case s == ScopeAll || s == ScopeAdmin || s == scope:
			return true
		case s == ScopeSourcesAdmin && (scope == ScopeSourcesRead || scope == ScopeSourcesWrite || scope == ScopeSourcesAdmin):
			return true
		}
	}
	return false
}

// SourceStore keeps sources and admin tokens.
type SourceStore interface {
	CreateSource(ctx context.Context, s Source) error
	Sources(ctx context.Context) ([]Source, error)
	// SetSourceDisabled enables or disables a source; ENOTFOUND if absent.
	SetSourceDisabled(ctx context.Context, id string, disabled bool) error
	CreateToken(ctx context.Context, t Token) error
	// TokenByHash finds a token by the SHA-256 of its secret; ENOTFOUND.
	TokenByHash(ctx context.Context, hash []byte) (Token, error)
	// Tokens lists the tokens, oldest first.
	Tokens(ctx context.Context) ([]Token, error)
	// RevokeToken deletes a token, so its secret no longer authenticates;
	// ENOTFOUND if absent.
	RevokeToken(ctx context.Context, id string) error
}
