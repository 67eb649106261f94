package privacy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
)

// BenchmarkGate measures what suppression costs on the ingest path per
// message: nothing while nobody is suppressed, an identifier extraction
// and a few keyed hashes once someone is.
func BenchmarkGate(b *testing.B) {
	raw := json.RawMessage(`{"type":"track","event":"Product Viewed","userId":"u-123","anonymousId":"3f1c2b7e-9a1d-4a3e-8c2f-1b2a3c4d5e6f",
		"context":{"traits":{"email":"someone@example.com"},"device":{"type":"ios","id":"A1B2"},"ip":"192.0.2.1"},"properties":{"sku":"SKU-1","price":9.5}}`)
	m := kith.Message{Type: "track", Event: "Product Viewed", UserID: "u-123", AnonymousID: "3f1c2b7e-9a1d-4a3e-8c2f-1b2a3c4d5e6f", Timestamp: time.Now(), Raw: raw}
	plainRaw := json.RawMessage(`{"type":"track","event":"Product Viewed","userId":"u-123","anonymousId":"3f1c2b7e-9a1d-4a3e-8c2f-1b2a3c4d5e6f",
		"context":{"ip":"192.0.2.1","library":{"name":"analytics.js"},"page":{"path":"/p/1"}},"properties":{"sku":"SKU-1","price":9.5}}`)
	plain := m
	plain.Raw = plainRaw
	rules := identity.DefaultRules()
	for _, tc := range []struct {
		name       string
		suppressed int
		m          kith.Message
	}{{"nobody suppressed", 0, m}, {"1000 suppressed, event with traits and a device", 1000, m}, {"1000 suppressed, plain track event", 1000, plain}} {
		b.Run(tc.name, func(b *testing.B) {
			s := &Service{Secret: []byte("0123456789abcdef0123456789abcdef"), Rules: func() *identity.Rules { return rules }}
			s.keyer = identity.NewKeyer(s.Secret)
			set := map[kith.IdentKey]struct{}{}
			for i := range tc.suppressed {
				set[s.keyer.Key(identity.Identifier{Type: "email", Value: string(rune('a'+i%26)) + "@x.example"})] = struct{}{}
			}
			s.suppressed.Store(&set)
			b.ReportAllocs()
			for b.Loop() {
				if s.Gate(tc.m) {
					b.Fatal("suppressed")
				}
			}
		})
	}
}
