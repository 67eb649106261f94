// Package profile is the one application layer over a unified profile:
// turning a reference into a canonical profile id, assembling the
// Customer 360 view, and building the data-subject export document. The
// HTTP API and the console both call it (and destinations and journeys
// will), so the two cannot drift apart in what they read, how they resolve
// a person or which errors they let through.
//
// Errors from the store or the audience engine pass through wrapped with
// context: a read is "not found" (kith.ENOTFOUND) only when the store said
// so, and any other failure keeps its code, so an overloaded or failing
// store is never reported as a missing person. Wrapped messages name
// canonical profile ids (which carry no personal data) and identifier
// types, never identifier values.
package profile

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/privacy"
)

// Store is what the service reads: the profile, identity-graph, event,
// consent, audience-history and third-party-audience reads of kith.Store.
// It is declared here, narrow, so a caller can see what a profile read
// touches and a test can wrap a real store to fail one of them.
type Store interface {
	Secret(ctx context.Context) ([]byte, error)
	LookupIdentifiers(ctx context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error)
	Canonical(ctx context.Context, profileID string) (string, error)
	Profile(ctx context.Context, canonicalID string) (kith.ProfileSummary, error)
	Traits(ctx context.Context, canonicalID string) ([]kith.Trait, error)
	Identities(ctx context.Context, canonicalID string) ([]kith.Identity, error)
	Merges(ctx context.Context, canonicalID string) ([]kith.Merge, error)
	Timeline(ctx context.Context, canonicalID string, q kith.TimelineQuery) ([]kith.TimelineEntry, error)
	EventsBySeq(ctx context.Context, seqs []int64) ([]kith.Message, error)
	Consents(ctx context.Context, canonicalID string) ([]kith.Consent, error)
	MembershipChanges(ctx context.Context, after int64, audience, profileID string, limit int) ([]kith.MembershipChange, error)
	DMPAudiences(ctx context.Context, keys []kith.IdentKey, now time.Time) ([]kith.DMPAudience, error)
}

// Audiences is what the service reads from the audience engine
// (audience.Engine): a profile's computed traits and its current
// memberships.
type Audiences interface {
	ComputedTraits(ctx context.Context, canonicalID string) ([]kith.Trait, error)
	ProfileMemberships(ctx context.Context, canonicalID string) ([]kith.Member, error)
}

// Config is what a Service is built from.
type Config struct {
	Store Store
	// Audiences, if set, adds computed traits and memberships to what
	// the service returns; nil means the server runs without an audience
	// engine, and a profile has neither.
	Audiences Audiences
	// Rules are the identity rules in force, read on every resolution so
	// that a rules change takes effect at once; nil means
	// identity.DefaultRules.
	Rules func() *identity.Rules
	// Now is the clock for export times and third-party audience expiry;
	// nil means time.Now.
	Now func() time.Time
}

// Service reads unified profiles for every caller that shows or hands
// out a person's data. It is safe for concurrent use.
type Service struct {
	cfg Config

	keyerMu  sync.Mutex
	keyer    identity.Keyer
	keyerSet bool
}

// New builds a Service; nothing is read from the store until it is used.
func New(cfg Config) *Service {
	if cfg.Rules == nil {
		r := identity.DefaultRules()
		cfg.Rules = func() *identity.Rules { return r }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg}
}

// Keyer returns the identifier keyer for the store's secret, read from the
// store once: identifiers are looked up, and third-party audiences found,
// by their keyed hash.
func (s *Service) Keyer(ctx context.Context) (identity.Keyer, error) {
	s.keyerMu.Lock()
	defer s.keyerMu.Unlock()
	if s.keyerSet {
		return s.keyer, nil
	}
	secret, err := s.cfg.Store.Secret(ctx)
	if err != nil {
		return identity.Keyer{}, fmt.Errorf("profile: reading the identifier secret: %w", err)
	}
	s.keyer, s.keyerSet = identity.NewKeyer(secret), true
	return s.keyer, nil
}

// Resolve turns a profile reference — a profile id (canonical or merged
// away) or an identifier "type:value", normalised by the identity rules in
// force — into the canonical profile id. It answers kith.ENOTFOUND when no
// profile has the identifier or the id, and any other store error as it
// is.
func (s *Service) Resolve(ctx context.Context, ref string) (string, error) {
	id, ok := s.cfg.Rules().ParseRef(ref)
	if !ok {
		c, err := s.cfg.Store.Canonical(ctx, ref)
		if err != nil {
			return "", fmt.Errorf("profile: looking up a profile id: %w", err)
		}
		return c, nil
	}
	keyer, err := s.Keyer(ctx)
	if err != nil {
		return "", err
	}
	key := keyer.Key(id)
	owners, err := s.cfg.Store.LookupIdentifiers(ctx, []kith.IdentKey{key})
	if err != nil {
		return "", fmt.Errorf("profile: looking up an identifier of type %s: %w", id.Type, err)
	}
	o, ok := owners[key]
	if !ok {
		return "", kith.Errorf(kith.ENOTFOUND, "no profile has identifier %s", id)
	}
	return o.Canonical, nil
}

// Traits returns a canonical profile's traits: those the events set
// (with their provenance and losing values), predicted ones, and the
// computed traits evaluated as of now, after them.
func (s *Service) Traits(ctx context.Context, canonical string) ([]kith.Trait, error) {
	traits, err := s.cfg.Store.Traits(ctx, canonical)
	if err != nil {
		return nil, fmt.Errorf("profile: reading the traits of %s: %w", canonical, err)
	}
	if s.cfg.Audiences == nil {
		return traits, nil
	}
	ct, err := s.cfg.Audiences.ComputedTraits(ctx, canonical)
	if err != nil {
		return nil, fmt.Errorf("profile: computing the traits of %s: %w", canonical, err)
	}
	return append(traits, ct...), nil
}

// Memberships returns the audiences a canonical profile is in now (none
// without an audience engine). A failure is an error, never an empty list:
// an export must not silently leave memberships out.
func (s *Service) Memberships(ctx context.Context, canonical string) ([]kith.Member, error) {
	if s.cfg.Audiences == nil {
		return nil, nil
	}
	ms, err := s.cfg.Audiences.ProfileMemberships(ctx, canonical)
	if err != nil {
		return nil, fmt.Errorf("profile: reading the audiences of %s: %w", canonical, err)
	}
	return ms, nil
}

// View is the Customer 360 of one unified profile, unmasked: what the
// console's customer page shows and the data-subject export starts from.
// Masking for a token without pii:read is the caller's, which knows the
// token.
type View struct {
	Profile kith.ProfileSummary
	// Traits are the event, predicted and computed traits (see Traits).
	Traits      []kith.Trait
	Identities  []kith.Identity
	Merges      []kith.Merge
	Memberships []kith.Member
	// Consent is each category's latest decision; ConsentHistory every
	// decision, oldest first.
	Consent        map[string]kith.Consent
	ConsentHistory []kith.Consent
	// ThirdPartyAudiences are the unexpired DMP audiences held against
	// any of the profile's identifiers.
	ThirdPartyAudiences []kith.DMPAudience
}

// View assembles the Customer 360 of a canonical profile.
func (s *Service) View(ctx context.Context, canonical string) (View, error) {
	return s.view(ctx, canonical, s.cfg.Now())
}

func (s *Service) view(ctx context.Context, canonical string, now time.Time) (View, error) {
	var v View
	var err error
	if v.Profile, err = s.cfg.Store.Profile(ctx, canonical); err != nil {
		return v, fmt.Errorf("profile: reading %s: %w", canonical, err)
	}
	if v.Traits, err = s.Traits(ctx, canonical); err != nil {
		return v, err
	}
	if v.Identities, err = s.cfg.Store.Identities(ctx, canonical); err != nil {
		return v, fmt.Errorf("profile: reading the identities of %s: %w", canonical, err)
	}
	if v.Merges, err = s.cfg.Store.Merges(ctx, canonical); err != nil {
		return v, fmt.Errorf("profile: reading the merges of %s: %w", canonical, err)
	}
	if v.Memberships, err = s.Memberships(ctx, canonical); err != nil {
		return v, err
	}
	if v.Consent, v.ConsentHistory, err = s.Consent(ctx, canonical); err != nil {
		return v, err
	}
	if v.ThirdPartyAudiences, err = s.thirdPartyAudiences(ctx, canonical, v.Identities, now); err != nil {
		return v, err
	}
	return v, nil
}

// Consent returns a canonical profile's consent: each category's latest
// decision, and every decision oldest first.
func (s *Service) Consent(ctx context.Context, canonical string) (current map[string]kith.Consent, history []kith.Consent, err error) {
	history, err = s.cfg.Store.Consents(ctx, canonical)
	if err != nil {
		return nil, nil, fmt.Errorf("profile: reading the consent of %s: %w", canonical, err)
	}
	return privacy.Current(history), history, nil
}

// ThirdPartyAudiences returns the unexpired DMP audiences held against any
// of a canonical profile's identifiers (they are kept by identifier key,
// so they follow the identifier through merges).
func (s *Service) ThirdPartyAudiences(ctx context.Context, canonical string) ([]kith.DMPAudience, error) {
	ids, err := s.cfg.Store.Identities(ctx, canonical)
	if err != nil {
		return nil, fmt.Errorf("profile: reading the identities of %s: %w", canonical, err)
	}
	return s.thirdPartyAudiences(ctx, canonical, ids, s.cfg.Now())
}

func (s *Service) thirdPartyAudiences(ctx context.Context, canonical string, ids []kith.Identity, now time.Time) ([]kith.DMPAudience, error) {
	keyer, err := s.Keyer(ctx)
	if err != nil {
		return nil, err
	}
	keys := make([]kith.IdentKey, len(ids))
	for i, id := range ids {
		keys[i] = keyer.Key(identity.Identifier{Type: id.Type, Value: id.Value})
	}
	as, err := s.cfg.Store.DMPAudiences(ctx, keys, now)
	if err != nil {
		return nil, fmt.Errorf("profile: reading the third-party audiences of %s: %w", canonical, err)
	}
	return as, nil
}

// Export builds the data-subject export of a canonical profile: its
// Customer 360, every event oldest first, and its audience history. It
// fails, rather than leaving a part out, when any read fails, the
// audience engine's included.
func (s *Service) Export(ctx context.Context, canonical string) (privacy.Document, error) {
	now := s.cfg.Now()
	v, err := s.view(ctx, canonical, now)
	if err != nil {
		return privacy.Document{}, err
	}
	d := privacy.Document{ExportedAt: now.UTC(), Profile: v.Profile, Traits: v.Traits, Identities: v.Identities,
		Consent: v.Consent, ConsentHistory: v.ConsentHistory, Audiences: v.Memberships,
		ThirdPartyAudiences: v.ThirdPartyAudiences, Merges: v.Merges}
	if d.Events, err = s.events(ctx, canonical); err != nil {
		return privacy.Document{}, err
	}
	if d.AudienceHistory, err = s.audienceHistory(ctx, v.Profile.Members); err != nil {
		return privacy.Document{}, err
	}
	// Every list is present, even when empty.
	d.Traits = nonNil(d.Traits)
	d.Events = nonNil(d.Events)
	d.Merges = nonNil(d.Merges)
	d.AudienceHistory = nonNil(d.AudienceHistory)
	d.Audiences = nonNil(d.Audiences)
	d.ThirdPartyAudiences = nonNil(d.ThirdPartyAudiences)
	d.ConsentHistory = nonNil(d.ConsentHistory)
	return d, nil
}

// events returns every event of a canonical profile as received, oldest
// first.
func (s *Service) events(ctx context.Context, canonical string) ([]json.RawMessage, error) {
	var seqs []int64
	q := kith.TimelineQuery{Limit: 1000}
	for {
		page, err := s.cfg.Store.Timeline(ctx, canonical, q)
		if err != nil {
			return nil, fmt.Errorf("profile: reading the timeline of %s: %w", canonical, err)
		}
		for _, e := range page {
			seqs = append(seqs, e.Seq)
		}
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1]
		q.Before = &kith.TimelineCursor{Timestamp: last.Timestamp, Seq: last.Seq}
	}
	for i, j := 0, len(seqs)-1; i < j; i, j = i+1, j-1 {
		seqs[i], seqs[j] = seqs[j], seqs[i]
	}
	var out []json.RawMessage
	for len(seqs) > 0 {
		n := min(len(seqs), 1000)
		msgs, err := s.cfg.Store.EventsBySeq(ctx, seqs[:n])
		if err != nil {
			return nil, fmt.Errorf("profile: reading the events of %s: %w", canonical, err)
		}
		for _, m := range msgs {
			out = append(out, m.Raw)
		}
		seqs = seqs[n:]
	}
	return out, nil
}

// audienceHistory returns every audience entry and exit of the member
// profiles of one unified profile.
func (s *Service) audienceHistory(ctx context.Context, members []string) ([]kith.MembershipChange, error) {
	var out []kith.MembershipChange
	for _, id := range members {
		after := int64(0)
		for {
			cs, err := s.cfg.Store.MembershipChanges(ctx, after, "", id, 1000)
			if err != nil {
				return nil, fmt.Errorf("profile: reading the audience history of %s: %w", id, err)
			}
			out = append(out, cs...)
			if len(cs) < 1000 {
				break
			}
			after = cs[len(cs)-1].Seq
		}
	}
	return out, nil
}

// nonNil returns s, or an empty list for nil, so a document lists "[]"
// rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
