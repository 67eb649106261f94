package privacy

import (
	"context"

	"github.com/kithcdp/kith"
)

// ConsentStore reads a profile's consent decisions.
type ConsentStore interface {
	Consents(ctx context.Context, canonicalID string) ([]kith.Consent, error)
}

// Current reduces a profile's consent history (its members' decisions,
// oldest first) to each category's latest decision: on a merged profile
// the most recent decision per category wins.
func Current(history []kith.Consent) map[string]kith.Consent {
	cur := map[string]kith.Consent{}
	for _, c := range history {
		if old, ok := cur[c.Category]; !ok || !c.At.Before(old.At) && (c.At.After(old.At) || c.Seq > old.Seq) {
			cur[c.Category] = c
		}
	}
	return cur
}

// Allowed is the one consent check every output makes: a profile may flow
// to an output only if each category the output needs is granted by its
// latest decision. A category never decided counts as not granted.
func Allowed(current map[string]kith.Consent, categories ...string) bool {
	for _, cat := range categories {
		if c, ok := current[cat]; !ok || !c.Granted {
			return false
		}
	}
	return true
}

// Allows loads a profile's consent and applies Allowed.
func Allows(ctx context.Context, st ConsentStore, canonicalID string, categories ...string) (bool, error) {
	h, err := st.Consents(ctx, canonicalID)
	if err != nil {
		if kith.ErrorCode(err) == kith.ENOTFOUND {
			return false, nil
		}
		return false, err
	}
	return Allowed(Current(h), categories...), nil
}
