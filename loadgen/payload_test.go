package loadgen

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/kithcdp/kith/rawjson"
)

var testBase = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestGeneratorDeterministic(t *testing.T) {
	tests := []struct {
		name  string
		seed  int64
		users int
	}{
		{"few users", 1, 10},
		{"many users", 42, 20000},
		{"negative seed", -7, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewGenerator(tt.seed, tt.users, testBase).AppendBatch(nil, 1000)
			b := NewGenerator(tt.seed, tt.users, testBase).AppendBatch(nil, 1000)
			if !bytes.Equal(a, b) {
				t.Fatal("same seed produced different payloads")
			}
			c := NewGenerator(tt.seed+1, tt.users, testBase).AppendBatch(nil, 1000)
			if bytes.Equal(a, c) {
				t.Fatal("different seeds produced the same payloads")
			}
		})
	}
}

// event is the part of a generated event the tests inspect.
type event struct {
	Type        string         `json:"type"`
	Event       string         `json:"event"`
	UserID      string         `json:"userId"`
	AnonymousID string         `json:"anonymousId"`
	MessageID   string         `json:"messageId"`
	Timestamp   time.Time      `json:"timestamp"`
	Traits      map[string]any `json:"traits"`
	Properties  struct {
		Revenue  float64 `json:"revenue"`
		Currency string  `json:"currency"`
		OrderID  string  `json:"order_id"`
		Products []struct {
			ProductID string  `json:"product_id"`
			SKU       string  `json:"sku"`
			Price     float64 `json:"price"`
			Quantity  int     `json:"quantity"`
		} `json:"products"`
	} `json:"properties"`
	Context struct {
		Library struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"library"`
		IP        string `json:"ip"`
		UserAgent string `json:"userAgent"`
	} `json:"context"`
}

func TestGeneratorEvents(t *testing.T) {
	tests := []struct {
		name   string
		seed   int64
		users  int
		events int
		// mixed says users return often enough for every kind of event.
		mixed bool
	}{
		{"default-like", 1, 2000, 20000, true},
		{"hot users", 9, 50, 5000, true},
		{"cold users", 3, 100000, 5000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGenerator(tt.seed, tt.users, testBase)
			seen := make(map[string]bool, tt.events)
			firstHadUser := map[string]bool{} // anonymousId → its first event carried a userId
			laterUser := map[string]bool{}    // anonymousId → seen later with a userId
			types := map[string]int{}
			var total int
			var buf []byte
			for i := range tt.events {
				buf = g.Next(buf[:0])
				total += len(buf)
				var e event
				if err := json.Unmarshal(buf, &e); err != nil {
					t.Fatalf("event %d is not valid JSON: %v\n%s", i, err, buf)
				}
				types[e.Type+"/"+e.Event]++
				if len(e.MessageID) != 36 || seen[e.MessageID] {
					t.Fatalf("event %d: bad or repeated messageId %q", i, e.MessageID)
				}
				seen[e.MessageID] = true
				if e.UserID == "" && e.AnonymousID == "" {
					t.Fatalf("event %d has neither userId nor anonymousId: %s", i, buf)
				}
				if e.AnonymousID != "" {
					if _, ok := firstHadUser[e.AnonymousID]; !ok {
						firstHadUser[e.AnonymousID] = e.UserID != ""
					} else if e.UserID != "" {
						laterUser[e.AnonymousID] = true
					}
				}
				if d := testBase.Sub(e.Timestamp); d < 0 || d > 5*time.Second {
					t.Fatalf("event %d: timestamp %v is not within 5s before %v", i, e.Timestamp, testBase)
				}
				if e.Context.Library.Name == "" || e.Context.IP == "" || e.Context.UserAgent == "" {
					t.Fatalf("event %d lacks context fields: %s", i, buf)
				}
				switch e.Type {
				case "identify":
					if e.UserID == "" || e.Traits["email"] == nil || e.Traits["name"] == nil || e.Traits["plan"] == nil {
						t.Fatalf("event %d: identify without userId or traits: %s", i, buf)
					}
				case "track":
					if e.Event == "" {
						t.Fatalf("event %d: track without event: %s", i, buf)
					}
					if e.Event == "Order Completed" {
						checkOrder(t, i, e, buf)
					}
				case "page":
				default:
					t.Fatalf("event %d: unexpected type %q", i, e.Type)
				}
			}
			for anon, had := range firstHadUser {
				if had {
					t.Fatalf("person %s was identified before arriving anonymously", anon)
				}
			}
			if tt.mixed {
				if len(laterUser) == 0 {
					t.Fatal("no anonymous visitor was later seen with a userId")
				}
				for _, k := range []string{"identify/", "page/", "track/Product Viewed", "track/Order Completed"} {
					if types[k] == 0 {
						t.Fatalf("no %s events in %v", k, types)
					}
				}
			}
			mean := float64(total) / float64(tt.events)
			if mean < 250 || mean > 450 {
				t.Fatalf("mean event size %.0f bytes, want 250–450", mean)
			}
			if math.Abs(g.MeanEventBytes()-mean) > 0.01 {
				t.Fatalf("MeanEventBytes = %.2f, measured %.2f", g.MeanEventBytes(), mean)
			}
		})
	}
}

// checkOrder verifies an Order Completed against the e-commerce spec.
func checkOrder(t *testing.T, i int, e event, raw []byte) {
	t.Helper()
	p := e.Properties
	if p.OrderID == "" || p.Currency == "" || len(p.Products) == 0 {
		t.Fatalf("event %d: incomplete order: %s", i, raw)
	}
	var sum float64
	for _, pr := range p.Products {
		if pr.ProductID == "" || pr.SKU == "" || pr.Quantity < 1 {
			t.Fatalf("event %d: incomplete product: %s", i, raw)
		}
		sum += pr.Price * float64(pr.Quantity)
	}
	if math.Abs(sum-p.Revenue) > 0.005 {
		t.Fatalf("event %d: revenue %.2f, products sum to %.2f", i, p.Revenue, sum)
	}
}

func TestAppendBatch(t *testing.T) {
	tests := []struct {
		name string
		n    int
	}{{"one", 1}, {"hundred", 100}, {"five hundred", 500}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := NewGenerator(5, 1000, testBase).AppendBatch([]byte("prefix"), tt.n)
			if !bytes.HasPrefix(body, []byte("prefix")) {
				t.Fatal("AppendBatch did not append")
			}
			var b struct {
				Batch []map[string]any `json:"batch"`
			}
			noError(t, json.Unmarshal(body[len("prefix"):], &b))
			equal(t, "items", len(b.Batch), tt.n)
			if len(body) > 500_000 {
				t.Fatalf("batch of %d is %d bytes, over Segment's 500 KB", tt.n, len(body))
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	tests := []string{"", "plain", `quote " and \ backslash`, "tab\tnewline\n", "unicode ✓"}
	for _, s := range tests {
		var got string
		noError(t, json.Unmarshal(rawjson.AppendString(nil, s), &got))
		equal(t, "round trip", got, s)
	}
}
