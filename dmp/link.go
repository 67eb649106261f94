package dmp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/imports"
	"github.com/kithcdp/kith/privacy"
)

// MatchStore is what matching third-party audiences needs of the store.
type MatchStore interface {
	LookupIdentifiers(ctx context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error)
	ScanIdentifiers(ctx context.Context, typ string, fn func(kith.IdentKey, string) error) error
	SaveDMPAudiences(ctx context.Context, as []kith.DMPAudience) error
}

// MAIDTypes are the identifier types a mobile advertising id may be known
// as: identity resolution names device advertising ids by device type.
var MAIDTypes = []string{"ios.idfa", "android.idfa"}

// ImportSummary counts one audience file: every row read is matched,
// unmatched or rejected.
type ImportSummary struct {
	Read      int64            `json:"read"`
	Matched   int64            `json:"matched"`
	Unmatched int64            `json:"unmatched"`
	Rejected  int64            `json:"rejected"`
	Reasons   map[string]int64 `json:"reasons"`
	// Audiences counts matched rows per audience name, for the first
	// maxListedAudiences names; OtherAudiences counts the matched rows'
	// memberships of any further names (stored all the same).
	Audiences      map[string]int64 `json:"audiences"`
	OtherAudiences int64            `json:"otherAudiences,omitempty"`
	// Entries is the number of (identifier, audience) entries stored.
	Entries int64 `json:"entries"`
}

// Matcher matches a DMP's audience files to identifiers Kith knows. Rows
// whose id is unknown are counted, never turned into profiles: a CDP is
// about known customers.
type Matcher struct {
	Store MatchStore
	Keyer identity.Keyer
	// Rules returns the identity rules in force (identity.Current's Load,
	// the indexer's source too; nil: identity.DefaultRules), so a cookie
	// is normalised as the indexer normalised the anonymous id it matches.
	Rules func() *identity.Rules
	// Now and TTL set the default expiry (DefaultTTL when zero).
	Now func() time.Time
	TTL time.Duration
	// MaxInputBytes bounds a file's bytes once decompressed (0: no
	// bound); past it the import stops (ETOOLARGE) naming the line.
	MaxInputBytes int64

	emails map[[32]byte]kith.IdentKey // SHA-256 of a known e-mail → its key
}

// Import reads one audience file of the partner and stores its matches.
// onReject, if set, is told about every rejected row.
func (m *Matcher) Import(ctx context.Context, partner string, r io.Reader, format string, onReject func(*RowError)) (ImportSummary, error) {
	sum := ImportSummary{Reasons: map[string]int64{}, Audiences: map[string]int64{}}
	partner = strings.TrimSpace(partner)
	if partner == "" {
		return sum, kith.Errorf(kith.EINVALID, "a DMP import needs the partner's name")
	}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	ttl := m.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	at := now().UTC()
	ar := newAudienceReader(r, format, at, ttl, m.MaxInputBytes)
	var batch []AudienceRecord
	names := 0 // audience names in batch
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		entries, matched, err := m.match(ctx, partner, batch, at)
		if err != nil {
			return err
		}
		for i, rec := range batch {
			if matched[i] {
				sum.Matched++
				for _, a := range rec.Audiences {
					if _, ok := sum.Audiences[a]; ok || len(sum.Audiences) < maxListedAudiences {
						sum.Audiences[a]++
					} else {
						sum.OtherAudiences++
					}
				}
			} else {
				sum.Unmatched++
			}
		}
		if err := m.Store.SaveDMPAudiences(ctx, entries); err != nil {
			return err
		}
		sum.Entries += int64(len(entries))
		batch, names = batch[:0], 0
		return nil
	}
	for {
		rec, err := ar.Next()
		if err == io.EOF {
			break
		}
		var re *RowError
		if errors.As(err, &re) {
			sum.Read++
			sum.Rejected++
			sum.Reasons[re.Reason]++
			if onReject != nil {
				onReject(re)
			}
			continue
		}
		if err != nil {
			// The rows read before are stored and counted.
			if ferr := flush(); ferr != nil {
				return sum, ferr
			}
			var le *imports.LimitError
			if errors.As(err, &le) {
				return sum, kith.Errorf(kith.ETOOLARGE, "%v; the %d rows before it were imported", err, sum.Read)
			}
			return sum, kith.Errorf(kith.EINVALID, "%v", err)
		}
		sum.Read++
		batch = append(batch, rec)
		// A batch's entries (one per matched identifier and audience)
		// are held until it is stored: bounded by its names too.
		if names += len(rec.Audiences); len(batch) >= 1000 || names >= 10_000 {
			if err := flush(); err != nil {
				return sum, err
			}
		}
	}
	return sum, flush()
}

// maxListedAudiences bounds the audience names an ImportSummary lists one
// by one: a file may name any number.
const maxListedAudiences = 10_000

// match finds the identifiers of a batch of records and returns the
// entries to store and which records matched.
func (m *Matcher) match(ctx context.Context, partner string, recs []AudienceRecord, at time.Time) ([]kith.DMPAudience, []bool, error) {
	type cand struct {
		rec int
		typ string
		key kith.IdentKey
	}
	var cands []cand
	var keys []kith.IdentKey
	normalise := identity.Normalise // the defaults
	if m.Rules != nil {
		normalise = m.Rules().Normalise // one set of rules for the batch
	}
	for i, rec := range recs {
		switch rec.IDType {
		case IDTypeCookie:
			id := normalise(kith.IdentAnonymousID, rec.ID)
			k := m.Keyer.Key(id)
			cands, keys = append(cands, cand{i, kith.IdentAnonymousID, k}), append(keys, k)
		case IDTypeMAID:
			// Devices report advertising ids in either case; identity
			// resolution keeps what the SDK sent.
			for _, typ := range MAIDTypes {
				for _, v := range []string{strings.ToLower(rec.ID), strings.ToUpper(rec.ID)} {
					k := m.Keyer.Key(identity.Identifier{Type: typ, Value: v})
					cands, keys = append(cands, cand{i, typ, k}), append(keys, k)
				}
			}
		case IDTypeEmailSHA256:
			if err := m.loadEmails(ctx); err != nil {
				return nil, nil, err
			}
			var d [32]byte
			if b, err := hex.DecodeString(rec.ID); err == nil && len(b) == 32 {
				copy(d[:], b)
				if k, ok := m.emails[d]; ok {
					cands = append(cands, cand{i, kith.IdentEmail, k})
				}
			}
		}
	}
	owners, err := m.Store.LookupIdentifiers(ctx, keys)
	if err != nil {
		return nil, nil, fmt.Errorf("dmp: matching identifiers: %w", err)
	}
	matched := make([]bool, len(recs))
	var out []kith.DMPAudience
	for _, c := range cands {
		if c.typ != kith.IdentEmail {
			if _, ok := owners[c.key]; !ok {
				continue
			}
		}
		matched[c.rec] = true
		rec := recs[c.rec]
		for _, a := range rec.Audiences {
			out = append(out, kith.DMPAudience{Key: c.key, IDType: c.typ, Partner: partner, Audience: a, ExpiresAt: rec.ExpiresAt, ImportedAt: at})
		}
	}
	return out, matched, nil
}

// loadEmails builds the digest index of known e-mail addresses, once per
// Matcher (about 80 bytes per address).
func (m *Matcher) loadEmails(ctx context.Context) error {
	if m.emails != nil {
		return nil
	}
	m.emails = map[[32]byte]kith.IdentKey{}
	err := m.Store.ScanIdentifiers(ctx, kith.IdentEmail, func(k kith.IdentKey, v string) error {
		if e, ok := NormaliseEmail(v); ok {
			m.emails[sha256.Sum256([]byte(e))] = k
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dmp: indexing e-mail digests: %w", err)
	}
	return nil
}

// SeedStore is what a look-alike seed export needs of the store.
type SeedStore interface {
	Members(ctx context.Context, audience, after string, limit int) ([]kith.Member, error)
	Identities(ctx context.Context, canonicalID string) ([]kith.Identity, error)
	Consents(ctx context.Context, canonicalID string) ([]kith.Consent, error)
}

// DefaultMinSeedSize is the smallest list exported unless configured
// otherwise: below it a list could single people out (Meta requires at
// least 100 matched people for a look-alike source).
const DefaultMinSeedSize = 100

// SeedConsent is the consent category a look-alike seed needs: the
// people in it are used for advertising.
const SeedConsent = "Advertising"

// SeedOptions configures an export.
type SeedOptions struct {
	Platform Platform
	// MinSize refuses exports of fewer people (DefaultMinSeedSize if 0).
	MinSize int
	// DefaultRegion parses phone numbers written without a country code.
	DefaultRegion string
	// Ready, if set, is called with the counts just before the file is
	// written out (an HTTP handler sets its headers there).
	Ready func(SeedSummary)
}

// SeedSummary counts an export: every member is exported, filtered by
// consent, or has no usable e-mail or phone.
type SeedSummary struct {
	Members           int64 `json:"members"`
	Exported          int64 `json:"exported"`
	FilteredByConsent int64 `json:"filteredByConsent"`
	NoContact         int64 `json:"noContact"`
}

// ErrTooFew is wrapped by ExportSeeds when fewer people than the minimum
// may be exported.
var ErrTooFew = errors.New("too few people to export")

// ExportSeeds writes the look-alike seed file of an audience: for every
// member whose consent allows advertising (privacy.Allowed, category
// Advertising), the hashed, normalised e-mail
// and phone most recently seen, with the platform's headers. The file is
// built aside first and written to w only if it holds at least MinSize
// people; otherwise nothing is written and the error wraps ErrTooFew.
func ExportSeeds(ctx context.Context, st SeedStore, audience string, opt SeedOptions, w io.Writer) (SeedSummary, error) {
	var sum SeedSummary
	if opt.MinSize <= 0 {
		opt.MinSize = DefaultMinSeedSize
	}
	tmp, err := os.CreateTemp("", "kith-seeds-*.csv")
	if err != nil {
		return sum, fmt.Errorf("dmp: seed export: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	sw := NewSeedWriter(tmp, opt.Platform)
	sw.DefaultRegion = opt.DefaultRegion
	after := ""
	for {
		ms, err := st.Members(ctx, audience, after, 1000)
		if err != nil {
			return sum, err
		}
		for _, mem := range ms {
			sum.Members++
			ok, err := privacy.Allows(ctx, st, mem.ProfileID, SeedConsent)
			if err != nil {
				return sum, err
			}
			if !ok {
				sum.FilteredByConsent++
				continue
			}
			ids, err := st.Identities(ctx, mem.ProfileID)
			if err != nil && kith.ErrorCode(err) != kith.ENOTFOUND {
				return sum, err
			}
			email, phone := latest(ids, kith.IdentEmail), latest(ids, kith.IdentPhone)
			written, err := sw.Write(email, phone)
			if err != nil {
				return sum, fmt.Errorf("dmp: seed export: %w", err)
			}
			if written {
				sum.Exported++
			} else {
				sum.NoContact++
			}
		}
		if len(ms) < 1000 {
			break
		}
		after = ms[len(ms)-1].ProfileID
	}
	if err := sw.Flush(); err != nil {
		return sum, fmt.Errorf("dmp: seed export: %w", err)
	}
	if sum.Exported < int64(opt.MinSize) {
		return sum, fmt.Errorf("%w: %d of the audience's %d members may be exported (%d without advertising consent, %d without a usable e-mail or phone); the minimum is %d",
			ErrTooFew, sum.Exported, sum.Members, sum.FilteredByConsent, sum.NoContact, opt.MinSize)
	}
	if opt.Ready != nil {
		opt.Ready(sum)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return sum, fmt.Errorf("dmp: seed export: %w", err)
	}
	if _, err := io.Copy(w, tmp); err != nil {
		return sum, fmt.Errorf("dmp: seed export: %w", err)
	}
	return sum, nil
}

// latest is the value of the identifier of type typ seen most recently.
func latest(ids []kith.Identity, typ string) string {
	var best kith.Identity
	for _, id := range ids {
		if id.Type == typ && (best.Value == "" || id.LastSeen.After(best.LastSeen)) {
			best = id
		}
	}
	return best.Value
}

// SortedAudiences lists the audience counts by name, for output.
func (s ImportSummary) SortedAudiences() []string {
	names := make([]string, 0, len(s.Audiences))
	for n := range s.Audiences {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
