package kith

import (
	"context"
	"encoding/json"
	"time"

	"github.com/kithcdp/kith/rawjson"
)

// OrderItem is one product line of an order, as the Segment e-commerce
// spec's products[] carries it.
type OrderItem struct {
	ProductID string  `json:"product_id,omitempty"`
	SKU       string  `json:"sku,omitempty"`
	Name      string  `json:"name,omitempty"`
	Category  string  `json:"category,omitempty"`
	Price     float64 `json:"price,omitempty"`
	Quantity  float64 `json:"quantity,omitempty"`
}

// Order is an `Order Completed` event as the insights read it, kept by the
// indexer on the profile the event resolved to (like a timeline entry).
type Order struct {
	ProfileID string
	Seq       int64
	Timestamp time.Time
	SourceID  string
	OrderID   string
	// Revenue is the order's value: properties.revenue, else total, else
	// the sum of price × quantity over its products.
	Revenue  float64
	Currency string
	Items    []OrderItem
}

// CustomerOrders is one unified profile's orders, oldest first.
type CustomerOrders struct {
	ProfileID string // canonical
	Orders    []Order
}

// ProfileInsights is what one insight run predicted for one profile: trait
// values keyed by trait name (p_alive, clv_365d, rfm_segment, ...).
type ProfileInsights struct {
	ProfileID string
	Traits    map[string]json.RawMessage
}

// TraitsJSON returns p.Traits as one JSON object, byte for byte what
// json.Marshal(p.Traits) returns: keys sorted, values compact. A run
// writes a million of these, so the common case (plain keys, values
// without characters encoding/json would escape or remove) is written
// directly, and only the rest goes through encoding/json. Every value is
// checked to be valid JSON either way.
func (p ProfileInsights) TraitsJSON() ([]byte, error) {
	if p.Traits == nil {
		return json.Marshal(p.Traits)
	}
	size := 2
	for k, v := range p.Traits {
		if !plainKey(k) || !plainValue(v) || !json.Valid(v) {
			return json.Marshal(p.Traits)
		}
		size += len(k) + len(v) + 4
	}
	return rawjson.AppendObject(make([]byte, 0, size), p.Traits), nil
}

// plainKey reports whether encoding/json writes key as it is between
// quotes: printable ASCII without a quote, backslash, <, > or &.
func plainKey(key string) bool {
	for i := range len(key) {
		if c := key[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// plainValue reports whether a JSON value is printable ASCII that
// encoding/json's compaction leaves as it is: spaces only inside strings,
// and no backslash, <, > or & (which it would escape). Without a
// backslash, every quote opens or closes a string.
func plainValue(v []byte) bool {
	in := false
	for _, c := range v {
		switch {
		case c == '"':
			in = !in
		case c == ' ':
			if !in {
				return false
			}
		case c < ' ' || c >= 0x7f || c == '\\' || c == '<' || c == '>' || c == '&':
			return false
		}
	}
	return true
}

// InsightRun is the record of one insight run: when and why it ran, on what
// data, and its report (fitted parameters, log-likelihoods, convergence,
// validation), which the insights package defines.
type InsightRun struct {
	ID         string          `json:"id"`
	Status     string          `json:"status"`
	Trigger    string          `json:"trigger"`
	StartedAt  time.Time       `json:"startedAt"`
	FinishedAt time.Time       `json:"finishedAt,omitzero"`
	Error      string          `json:"error,omitempty"`
	Report     json.RawMessage `json:"report,omitempty"`
}

// Insight run statuses.
const (
	RunRunning  = "running"
	RunFinished = "finished"
	RunFailed   = "failed"
)

// InsightStore gives the insights engine its input (orders per unified
// profile) and keeps its output (predicted traits and run records).
type InsightStore interface {
	// ScanOrders calls fn once per canonical profile that has orders, with
	// its orders across all merged members oldest first. The order in
	// which profiles are visited is unspecified. An error from fn stops
	// the scan and is returned.
	ScanOrders(ctx context.Context, fn func(CustomerOrders) error) error
	// WriteInsights stores the predicted traits of run for ps, replacing
	// what earlier runs predicted for those profiles.
	WriteInsights(ctx context.Context, runID string, at time.Time, ps []ProfileInsights) error
	// SaveInsightRun creates or updates a run record.
	SaveInsightRun(ctx context.Context, r InsightRun) error
	// InsightRun returns one run; ENOTFOUND if absent.
	InsightRun(ctx context.Context, id string) (InsightRun, error)
	// InsightRuns lists the latest runs, newest first.
	InsightRuns(ctx context.Context, limit int) ([]InsightRun, error)
	// ScanPredicted calls fn once per canonical profile holding predicted
	// values of any of the keys, with those values (the latest run's; for
	// a merged profile, its members' latest). The order of profiles is
	// unspecified. Audiences read it when a definition starts using a
	// predicted trait.
	ScanPredicted(ctx context.Context, keys []string, fn func(canonicalID string, traits map[string]json.RawMessage) error) error
}
