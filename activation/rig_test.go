package activation_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/activation"
	"github.com/kithcdp/kith/collect"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

// rig is a real embedded store in a temporary directory, the indexer that
// applies its log, and engines started on it.
type rig struct {
	t      testing.TB
	dir    string
	store  *sqlite.DB
	ix     *pipeline.Indexer
	attr   *pipeline.Attribution
	keyer  identity.Keyer
	secret []byte
	// sent counts the messages appended, to space their arrival times.
	sent int
}

func newRig(t testing.TB) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir()}
	r.open()
	t.Cleanup(func() {
		if r.store != nil {
			r.store.Close()
		}
	})
	return r
}

// open opens the store in the rig's directory, with a new indexer that
// loads its cursor from it.
func (r *rig) open() {
	r.t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, r.dir, sqlite.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	secret, err := store.Secret(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	r.store, r.secret = store, secret
	r.ix = pipeline.New(store, secret, pipeline.Config{BatchSize: 1000})
	r.keyer = identity.NewKeyer(secret)
	r.attr = pipeline.NewAttribution(nil, r.keyer, nil, "activation")
	r.index()
}

// reopen closes the store and opens it again, as a restart does. Engines
// on it must be closed first.
func (r *rig) reopen() {
	r.t.Helper()
	if err := r.store.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.open()
}

// add appends messages (JSON objects in Segment shape) as collection
// stores them, from source "src", and lets the indexer apply them.
func (r *rig) add(bodies ...string) {
	r.t.Helper()
	r.appendLog(bodies...)
	r.index()
}

// appendLog appends messages as add does, leaving them to an indexer
// that runs.
func (r *rig) appendLog(bodies ...string) {
	r.t.Helper()
	t0 := time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)
	var msgs []kith.Message
	for _, b := range bodies {
		p := collect.Parse([]byte(`{"batch":[`+b+`]}`), "batch", collect.Meta{ReceivedAt: t0.Add(time.Duration(r.sent) * time.Second)}, collect.DefaultLimits())
		if len(p.Rejected) > 0 {
			r.t.Fatalf("fixture %s rejected: %+v", b, p.Rejected)
		}
		for _, m := range p.Messages {
			m.SourceID = "src"
			msgs = append(msgs, m)
		}
		r.sent++
	}
	if _, err := r.store.Append(context.Background(), kith.AppendBatch{Events: msgs}); err != nil {
		r.t.Fatal(err)
	}
}

// index applies the whole log.
func (r *rig) index() {
	r.t.Helper()
	for {
		n, err := r.ix.Step(context.Background())
		if err != nil {
			r.t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// create stores a destination with id dst_<name>, starting at the
// beginning of both streams.
func (r *rig) create(d kith.Destination) kith.Destination {
	r.t.Helper()
	d.ID = "dst_" + d.Name
	d.CreatedAt = time.Now().UTC().Truncate(time.Millisecond)
	if err := activation.Validate(d); err != nil {
		r.t.Fatal(err)
	}
	if err := r.store.CreateDestination(context.Background(), d, kith.DestinationProgress{}); err != nil {
		r.t.Fatal(err)
	}
	return d
}

// hook creates a webhook destination to url, subscribed to every event.
func (r *rig) hook(name, url string) kith.Destination {
	return r.create(kith.Destination{Name: name, Type: kith.DestinationWebhook, Config: webhookTo(url, "").Config, Events: every})
}

// addViews appends n "Viewed" tracks of users u0 … u(users-1) in turn,
// the i-th with messageId u<i%users>-<i>.
func (r *rig) addViews(n, users int) {
	r.t.Helper()
	var bodies []string
	for i := range n {
		bodies = append(bodies, track(fmt.Sprintf("u%d", i%users), "Viewed", i))
	}
	r.add(bodies...)
}

// waitDelivered waits until a destination has delivered n messages.
func (r *rig) waitDelivered(d kith.Destination, n int64) {
	r.t.Helper()
	waitFor(r.t, func() string { return fmt.Sprintf("%s: counts %+v", d.Name, r.counts(d)) }, func() bool { return r.counts(d).Delivered == n })
}

// fastPolicy retries within milliseconds, so tests need not wait.
var fastPolicy = activation.Policy{Base: 20 * time.Millisecond, Cap: 100 * time.Millisecond}

// engine starts an engine on the rig's store (or on store, a real store
// wrapped to misbehave) with cfg's settings over the test defaults.
func (r *rig) engine(cfg activation.Config) *activation.Engine {
	r.t.Helper()
	if cfg.Store == nil {
		cfg.Store = r.store
	}
	cfg.Attribution, cfg.Cursor = r.attr, r.ix.Cursor
	if cfg.Poll == 0 {
		cfg.Poll = 10 * time.Millisecond
	}
	if cfg.Policy.Base == 0 && cfg.Policy.MaxAge == 0 {
		cfg.Policy = fastPolicy
	}
	e, err := activation.New(cfg)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { e.Close() })
	return e
}

// counts returns a destination's accounting.
func (r *rig) counts(d kith.Destination) kith.DestinationCounts {
	r.t.Helper()
	all, err := r.store.DestinationCounts(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return all[d.ID]
}

// waitFor polls cond until it holds, failing the test with what after
// 30 s.
func waitFor(t testing.TB, what func() string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// track is a track event of a user with a messageId of its own.
func track(user, event string, n int) string {
	return fmt.Sprintf(`{"type":"track","event":%q,"userId":%q,"messageId":"%s-%d","properties":{"n":%d}}`, event, user, user, n, n)
}

// sent is what a webhook request carried: one message.
type sent struct {
	ID        string // webhook-id
	MessageID string `json:"messageId"`
	UserID    string `json:"userId"`
	Event     string `json:"event"`
	Type      string `json:"type"`
}

// messages decodes the receiver's requests as single webhook messages.
func messages(t *testing.T, rc *receiver) []sent {
	t.Helper()
	var out []sent
	for _, r := range rc.requests() {
		var s sent
		if err := json.Unmarshal(r.Body, &s); err != nil {
			t.Fatalf("body %s: %v", r.Body, err)
		}
		s.ID = r.Header.Get("webhook-id")
		out = append(out, s)
	}
	return out
}

// seqOf reads the log position from a delivery id dlv_<dst>_e<seq>.
func seqOf(t *testing.T, id string) int64 {
	t.Helper()
	i := strings.LastIndex(id, "_e")
	n, err := strconv.ParseInt(id[i+2:], 10, 64)
	if i < 0 || err != nil {
		t.Fatalf("delivery id %q is not dlv_<destination>_e<seq>", id)
	}
	return n
}

// profileOf returns the canonical profile of an identifier.
func (r *rig) profileOf(typ, value string) string {
	r.t.Helper()
	k := r.keyer.Key(identity.Identifier{Type: typ, Value: value})
	owners, err := r.store.LookupIdentifiers(context.Background(), []kith.IdentKey{k})
	if err != nil || owners[k].Canonical == "" {
		r.t.Fatalf("no profile has %s:%s (%v)", typ, value, err)
	}
	return owners[k].Canonical
}
