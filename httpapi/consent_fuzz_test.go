package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/admin"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/httpapi"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

// consentServer is a whole Kith on the embedded store, served in process,
// for fuzzing one endpoint.
type consentServer struct {
	api      http.Handler
	writeKey string
	users    int
	puts     int
}

func (c *consentServer) do(method, path string, body []byte, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	c.api.ServeHTTP(w, req)
	return w
}

// newUser identifies a new person and waits until the indexer has made
// their profile, so that each holds a short consent history.
func (c *consentServer) newUser(tb testing.TB) string {
	c.users++
	user := fmt.Sprintf("fuzz-user-%d", c.users)
	w := c.do("POST", "/v1/identify", []byte(`{"userId":"`+user+`","traits":{"plan":"x"}}`), basic(c.writeKey))
	if w.Code != http.StatusOK {
		tb.Fatalf("identify: %d %s", w.Code, w.Body)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if w := c.do("GET", "/v1/profiles/user_id:"+user+"/consent", nil, "Bearer "+adminToken); w.Code == http.StatusOK {
			return user
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the profile of %s was not made", user)
		}
	}
}

func startConsentServer(f *testing.F) *consentServer {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, f.TempDir(), sqlite.Options{})
	if err != nil {
		f.Fatal(err)
	}
	if err := admin.ProvisionToken(ctx, store, adminToken, time.Now()); err != nil {
		f.Fatal(err)
	}
	secret, err := store.Secret(ctx)
	if err != nil {
		f.Fatal(err)
	}
	ix := pipeline.New(store, secret, pipeline.Config{BatchSize: 1000})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go ix.WatchHead(rctx)
	go func() { ix.Run(rctx); close(done) }()
	com := collect.NewCommitter(store, 64, 5000, ix.Notify)
	api := httpapi.New(store, com, ix, httpapi.Config{Now: time.Now})
	f.Cleanup(func() {
		api.Close()
		com.Close()
		cancel()
		<-done
		store.Close()
	})
	c := &consentServer{api: api}
	b, _ := json.Marshal(map[string]string{"name": "fuzz"})
	w := c.do("POST", "/v1/sources", b, "Bearer "+adminToken)
	var src struct {
		WriteKey string `json:"writeKey"`
	}
	if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &src) != nil {
		f.Fatalf("create source: %d %s", w.Code, w.Body)
	}
	c.writeKey = src.WriteKey
	return c
}

// FuzzPutConsent sends any body to PUT /v1/profiles/{ref}/consent (a
// preference centre's request). The answer is never a server error: a body
// that is not one object of category names to true or false is refused
// with 400 and the API's error object; an accepted one is recorded, and
// the profile's current consent then holds each category with the decision
// sent, as text a store can hold.
func FuzzPutConsent(f *testing.F) {
	for _, s := range []string{
		`{"Advertising":true,"Analytics":false}`, `{"Advertising":true,"Advertising":false}`, `{}`, `{" ":true}`,
		`{"a":"yes"}`, `{"a":1}`, `[true]`, `{"a":true} {"b":false}`, `{"\u0000":true}`, "{\"\xff\":true}",
		`{"Ad\u00e9":true,"\ud800":false}`, `{"` + string(bytes.Repeat([]byte("x"), 101)) + `":true}`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	c := startConsentServer(f)
	user := c.newUser(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 4<<10 {
			return
		}
		if c.puts >= 100 {
			user, c.puts = c.newUser(t), 0 // keep each history short
		}
		w := c.do("PUT", "/v1/profiles/user_id:"+user+"/consent", body, "Bearer "+adminToken)
		switch w.Code {
		case http.StatusOK, http.StatusAccepted:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("PUT %q: %d with %s, not the API's error object", body, w.Code, w.Body)
			}
			return
		default:
			t.Fatalf("PUT %q: %d %s", body, w.Code, w.Body)
		}
		c.puts++
		// The server reads the body's first JSON value and ignores what
		// follows it ({"a":true} {"b":false} records a alone), reported on
		// issue 14; so does this check.
		var sent map[string]bool
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&sent); err != nil || len(sent) == 0 {
			t.Fatalf("PUT %q: accepted (%d) a body that is not categories: %v", body, w.Code, err)
		}
		if w.Code == http.StatusAccepted {
			return // recorded, not applied yet: nothing to compare
		}
		var got struct {
			Categories map[string]kith.Consent `json:"categories"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("PUT %q: answer %s: %v", body, w.Body, err)
		}
		for cat, granted := range sent {
			dec, ok := got.Categories[cat]
			if !ok || dec.Granted != granted {
				t.Fatalf("PUT %q: category %q is %+v (%v) after the decision %v", body, cat, dec, ok, granted)
			}
			if p := kith.TextProblem(cat); p != "" {
				t.Fatalf("PUT %q: accepted a category that %s", body, p)
			}
		}
	})
}
