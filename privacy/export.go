package privacy

import (
	"encoding/json"
	"time"

	"github.com/kithcdp/kith"
)

// Document is everything Kith holds about one person, as the data-subject
// export returns it. profile.Service.Export builds it, so the API and the
// console hand out the same document.
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
