package privacy

import (
	"context"
	"encoding/json"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
)

// Document is everything Kith holds about one person, as the data-subject
// export returns it.
type Document struct {
	ExportedAt time.Time           `json:"exportedAt"`
	Profile    kith.ProfileSummary `json:"profile"`
	// Traits are the unified traits with provenance (event, predicted,
	// computed) and the values that lost.
	Traits     []kith.Trait    `json:"traits"`
	Identities []kith.Identity `json:"identities"`
	// Consent is each category's latest decision and the whole history.
	Consent             map[string]kith.Consent `json:"consent"`
	ConsentHistory      []kith.Consent          `json:"consentHistory"`
	Events              []json.RawMessage       `json:"events"`
	Audiences           []kith.Member           `json:"audiences"`
	AudienceHistory     []kith.MembershipChange `json:"audienceHistory"`
	ThirdPartyAudiences []kith.DMPAudience      `json:"thirdPartyAudiences"`
	Merges              []kith.Merge            `json:"merges"`
}

// Extras are what the export takes from outside the store: the audience
// engine's computed traits and current memberships.
type Extras struct {
	Computed    []kith.Trait
	Memberships []kith.Member
}

// Export builds the document of a unified profile.
func Export(ctx context.Context, st kith.Store, secret []byte, canonical string, now time.Time, x Extras) (Document, error) {
	d := Document{ExportedAt: now.UTC(), Audiences: x.Memberships}
	var err error
	if d.Profile, err = st.Profile(ctx, canonical); err != nil {
		return d, err
	}
	if d.Traits, err = st.Traits(ctx, canonical); err != nil {
		return d, err
	}
	d.Traits = append(d.Traits, x.Computed...)
	if d.Identities, err = st.Identities(ctx, canonical); err != nil {
		return d, err
	}
	if d.Merges, err = st.Merges(ctx, canonical); err != nil {
		return d, err
	}
	// Every event, oldest first.
	var seqs []int64
	q := kith.TimelineQuery{Limit: 1000}
	for {
		page, err := st.Timeline(ctx, canonical, q)
		if err != nil {
			return d, err
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
	for len(seqs) > 0 {
		n := min(len(seqs), 1000)
		msgs, err := st.EventsBySeq(ctx, seqs[:n])
		if err != nil {
			return d, err
		}
		for _, m := range msgs {
			d.Events = append(d.Events, m.Raw)
		}
		seqs = seqs[n:]
	}
	if d.ConsentHistory, err = st.Consents(ctx, canonical); err != nil {
		return d, err
	}
	d.Consent = Current(d.ConsentHistory)
	for _, id := range d.Profile.Members {
		after := int64(0)
		for {
			cs, err := st.MembershipChanges(ctx, after, "", id, 1000)
			if err != nil {
				return d, err
			}
			d.AudienceHistory = append(d.AudienceHistory, cs...)
			if len(cs) < 1000 {
				break
			}
			after = cs[len(cs)-1].Seq
		}
	}
	keyer := identity.NewKeyer(secret)
	keys := make([]kith.IdentKey, len(d.Identities))
	for i, id := range d.Identities {
		keys[i] = keyer.Key(identity.Identifier{Type: id.Type, Value: id.Value})
	}
	if d.ThirdPartyAudiences, err = st.DMPAudiences(ctx, keys, now); err != nil {
		return d, err
	}
	for _, p := range []*[]kith.Trait{&d.Traits} {
		if *p == nil {
			*p = []kith.Trait{}
		}
	}
	if d.Events == nil {
		d.Events = []json.RawMessage{}
	}
	if d.Merges == nil {
		d.Merges = []kith.Merge{}
	}
	if d.AudienceHistory == nil {
		d.AudienceHistory = []kith.MembershipChange{}
	}
	if d.Audiences == nil {
		d.Audiences = []kith.Member{}
	}
	if d.ThirdPartyAudiences == nil {
		d.ThirdPartyAudiences = []kith.DMPAudience{}
	}
	if d.ConsentHistory == nil {
		d.ConsentHistory = []kith.Consent{}
	}
	return d, nil
}
