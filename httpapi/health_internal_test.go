package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/sqlite"
)

// rebuilding is an indexer part way through a rebuild, or not.
type rebuilding kith.RebuildProgress

func (r rebuilding) Backlog() int64                { return r.Of - r.Position }
func (r rebuilding) Waiting() int64                { return 0 }
func (r rebuilding) Rebuild() kith.RebuildProgress { return kith.RebuildProgress(r) }

// /healthz shows a rebuild of the derived state while it lasts, and is
// healthy meanwhile (the server serves what is rebuilt so far).
func TestHealthShowsRebuild(t *testing.T) {
	store, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tests := []struct {
		name string
		ix   rebuilding
		want map[string]any // the rebuilding object; nil: absent
	}{
		{"rebuilding", rebuilding{Position: 1500, Of: 4000, Active: true}, map[string]any{"position": 1500.0, "of": 4000.0, "percent": 37.5}},
		{"caught up", rebuilding{Position: 4000, Of: 4000}, nil},
		{"never rebuilt", rebuilding{Position: 10}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(store, nil, tc.ix, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			w := httptest.NewRecorder()
			s.ServeHTTP(w, httptest.NewRequest("GET", "/healthz", nil))
			var body map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if w.Code != 200 || body["status"] != "ok" {
				t.Errorf("%d %v, want 200 and status ok", w.Code, body)
			}
			got, _ := body["rebuilding"].(map[string]any)
			if tc.want == nil {
				if _, ok := body["rebuilding"]; ok {
					t.Errorf("rebuilding = %v, want it absent", body["rebuilding"])
				}
				return
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("rebuilding.%s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}
