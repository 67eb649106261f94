package audience_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/audience"
	"github.com/kithcdp/kith/pipeline"
	"github.com/kithcdp/kith/sqlite"
)

type rig struct {
	t     testing.TB
	store *sqlite.DB
	eng   *audience.Engine
	ix    *pipeline.Indexer
	now   time.Time
	seq   int
}

func newRig(t testing.TB) *rig {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	secret, err := db.Secret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, store: db, now: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	r.eng = audience.NewEngine(db, audience.Config{Secret: secret, Now: func() time.Time { return r.now }, FlushEvery: -1})
	r.ix = pipeline.New(db, secret, pipeline.Config{BatchSize: 37, Observer: r.eng})
	return r
}

// settle runs the indexer and the engine until both are idle.
func (r *rig) settle() {
	r.t.Helper()
	ctx := context.Background()
	for {
		n, err := r.ix.Step(ctx)
		if err != nil {
			r.t.Fatal(err)
		}
		worked := false
		for {
			w, err := r.eng.Step(ctx)
			if err != nil {
				r.t.Fatal(err)
			}
			if !w {
				break
			}
			worked = true
		}
		if n == 0 && !worked {
			return
		}
	}
}

func (r *rig) put(kind, key, text string) {
	r.t.Helper()
	if _, err := r.eng.Put(context.Background(), kith.Definition{Kind: kind, Key: key, Text: text}); err != nil {
		r.t.Fatalf("%s: %v", key, err)
	}
}

func (r *rig) append(msgs []kith.Message) {
	r.t.Helper()
	if _, err := r.store.Append(context.Background(), kith.AppendBatch{Events: msgs}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) event(typ, name, user, anon string, at time.Time, props map[string]any) kith.Message {
	r.seq++
	body := map[string]any{"type": typ, "properties": props}
	if typ == "identify" {
		body = map[string]any{"type": typ, "traits": props}
	}
	if name != "" {
		body["event"] = name
	}
	if user != "" {
		body["userId"] = user
	}
	if anon != "" {
		body["anonymousId"] = anon
	}
	raw, _ := json.Marshal(body)
	return kith.Message{SourceID: "src", MessageID: fmt.Sprintf("m%d", r.seq), Type: typ, Event: name, UserID: user, AnonymousID: anon,
		Timestamp: at, ReceivedAt: r.now, Raw: raw}
}

func (r *rig) members(key string) []string {
	r.t.Helper()
	ms, err := r.store.Members(context.Background(), key, "", 100000)
	if err != nil {
		r.t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ProfileID)
	}
	return ids
}

var conditions = []string{
	`count(event "Order Completed" within 30d) >= 2`,
	`sum(properties.revenue of event "Order Completed") > 100`,
	`traits.plan = "pro" and count(event * within 7d) = 0`,
	`traits.orders_14d >= 1 or audience "c0"`,
	`count(event "Order Completed" between 3d and 10d ago) >= 1 and not traits.plan = "free"`,
	`most_frequent(properties.category of event "Order Completed") = "shoes"`,
}

// Real time and backfill agree: audiences defined before a random stream
// of events (with merges, traits and windows, across several batches and
// a clock moving on) have exactly the members of the same audiences
// defined afterwards and backfilled.
func TestRealTimeAndBackfillAgree(t *testing.T) {
	for trial := range 3 {
		r := newRig(t)
		rnd := rand.New(rand.NewPCG(uint64(trial), 7))
		r.put(kith.KindComputedTrait, "orders_14d", `count(event "Order Completed" within 14d)`)
		for i, c := range conditions {
			r.put(kith.KindAudience, fmt.Sprintf("c%d", i), c)
		}
		r.settle()
		cats := []string{"shoes", "hats", "bags"}
		plans := []string{"pro", "free", "team"}
		for round := range 4 {
			var msgs []kith.Message
			for range 150 {
				u := rnd.IntN(40)
				user, anon := fmt.Sprintf("u%d", u), fmt.Sprintf("a%d", rnd.IntN(60))
				if rnd.IntN(3) == 0 {
					user = "" // anonymous: merges when the anonymous id meets a user later
				}
				at := r.now.Add(-time.Duration(rnd.IntN(40*24)) * time.Hour)
				switch rnd.IntN(4) {
				case 0:
					msgs = append(msgs, r.event("identify", "", user, anon, at, map[string]any{"plan": plans[rnd.IntN(3)]}))
				case 1:
					msgs = append(msgs, r.event("page", "Home", user, anon, at, map[string]any{}))
				default:
					msgs = append(msgs, r.event("track", "Order Completed", user, anon, at,
						map[string]any{"revenue": rnd.IntN(80), "category": cats[rnd.IntN(3)]}))
				}
			}
			r.append(msgs)
			r.settle()
			r.now = r.now.Add(time.Duration(round+1) * 36 * time.Hour) // windows expire between rounds
			r.settle()
		}
		// The same conditions again, each aggregate with a filter every
		// event passes: new aggregates, so the backfill computes them from
		// the log (attributing events through the identity graph as it is
		// now) instead of sharing the real-time states.
		for i, c := range conditions {
			c = strings.ReplaceAll(c, `event "Order Completed"`, `event "Order Completed" where not properties.zzz exists`)
			c = strings.ReplaceAll(c, `event *`, `event * where not properties.zzz exists`)
			r.put(kith.KindAudience, fmt.Sprintf("late%d", i), c)
		}
		// late3 refers to c0, whose members late0 must equal.
		r.settle()
		nonEmpty := 0
		for i := range conditions {
			rt, bf := r.members(fmt.Sprintf("c%d", i)), r.members(fmt.Sprintf("late%d", i))
			if !slices.Equal(rt, bf) {
				t.Fatalf("trial %d, %s: real time %v, backfill %v", trial, conditions[i], rt, bf)
			}
			if len(rt) > 0 {
				nonEmpty++
			}
		}
		if nonEmpty < 4 {
			t.Fatalf("trial %d: only %d audiences have members: the test data exercise too little", trial, nonEmpty)
		}
		cs, err := r.store.MembershipChanges(context.Background(), 0, "c0", "", 100000)
		if err != nil {
			t.Fatal(err)
		}
		causes := map[string]int{}
		for _, c := range cs {
			causes[c.Cause]++
		}
		if causes["expiry"] == 0 || causes["event"] == 0 {
			t.Fatalf("trial %d: c0's changes by cause %v: want entries from events and exits on expiry", trial, causes)
		}
	}
}

// "Not seen for 30 days" flips on the instant the last event turns 30
// days old, scheduled — the engine runs nothing in between.
func TestExpiryFiresOnTime(t *testing.T) {
	r := newRig(t)
	r.put(kith.KindAudience, "lapsed", `count(event * within 30d) = 0`)
	r.settle()
	last := r.now
	r.append([]kith.Message{r.event("track", "Login", "u1", "", last, map[string]any{})})
	r.settle()
	if got := r.members("lapsed"); len(got) != 0 {
		t.Fatalf("lapsed right after an event: %v", got)
	}
	if due := r.eng.NextDue(); !due.Equal(last.Add(30 * 24 * time.Hour)) {
		t.Fatalf("next due %v, want %v", due, last.Add(30*24*time.Hour))
	}
	r.now = last.Add(30*24*time.Hour - time.Second)
	r.settle()
	if got := r.members("lapsed"); len(got) != 0 {
		t.Fatalf("lapsed a second early: %v", got)
	}
	r.now = last.Add(30 * 24 * time.Hour)
	r.settle()
	if got := r.members("lapsed"); len(got) != 1 {
		t.Fatalf("not lapsed on time: %v", got)
	}
	cs, _ := r.store.MembershipChanges(context.Background(), 0, "lapsed", "", 10)
	if len(cs) != 1 || !cs[0].Entered || cs[0].Cause != "expiry" || !cs[0].At.Equal(r.now) {
		t.Fatalf("history %+v", cs)
	}
	// A new event brings the profile back, with the event as the cause.
	r.append([]kith.Message{r.event("track", "Login", "u1", "", r.now, map[string]any{})})
	r.settle()
	cs, _ = r.store.MembershipChanges(context.Background(), 0, "lapsed", "", 10)
	if len(r.members("lapsed")) != 0 || len(cs) != 2 || cs[1].Entered || cs[1].Cause != "event" || cs[1].CauseSeq == 0 {
		t.Fatalf("after a new event: %v %+v", r.members("lapsed"), cs)
	}
}

// States are written behind memberships. An engine that stops without
// writing them (a crash) is replaced by one that replays the log from the
// stored states: the same memberships, no change recorded twice, and the
// states (here: a computed trait) as if nothing had happened.
func TestCrashBeforeStatesAreWritten(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	secret, _ := r.store.Secret(ctx)
	r.eng = audience.NewEngine(r.store, audience.Config{Secret: secret, Now: func() time.Time { return r.now }, FlushEvery: time.Hour})
	r.ix = pipeline.New(r.store, secret, pipeline.Config{BatchSize: 7, Observer: r.eng})
	r.put(kith.KindComputedTrait, "orders", `count(event "Order Completed")`)
	r.put(kith.KindAudience, "buyers", `traits.orders >= 2`)
	r.settle()
	if err := r.eng.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var msgs []kith.Message
	for i := range 30 {
		msgs = append(msgs, r.event("track", "Order Completed", fmt.Sprintf("u%d", i%10), "", r.now, map[string]any{}))
	}
	r.append(msgs)
	r.settle() // memberships committed; the states only in memory
	c, sc, err := r.store.AudienceCursors(ctx)
	if err != nil || sc >= c {
		t.Fatalf("cursors %d (memberships) and %d (states), %v: the states should lag", c, sc, err)
	}
	before := r.members("buyers")
	changes, _ := r.store.MembershipChanges(ctx, 0, "", "", 1000)
	if len(before) != 10 || len(changes) != 10 {
		t.Fatalf("before the crash: %d members, %d changes", len(before), len(changes))
	}

	// The crash: a new engine on the same store.
	r.eng = audience.NewEngine(r.store, audience.Config{Secret: secret, Now: func() time.Time { return r.now }, FlushEvery: -1})
	r.ix = pipeline.New(r.store, secret, pipeline.Config{BatchSize: 7, Observer: r.eng})
	r.settle()
	if after := r.members("buyers"); !slices.Equal(after, before) {
		t.Fatalf("members after the replay %v, before %v", after, before)
	}
	if again, _ := r.store.MembershipChanges(ctx, 0, "", "", 1000); len(again) != len(changes) {
		t.Fatalf("%d changes after the replay, %d before: recorded twice", len(again), len(changes))
	}
	traits, err := r.eng.ComputedTraits(ctx, before[0])
	if err != nil || len(traits) != 1 || string(traits[0].Value) != "3" {
		t.Fatalf("computed traits after the replay: %v %v", traits, err)
	}
	if c2, sc2, _ := r.store.AudienceCursors(ctx); c2 != c || sc2 != c {
		t.Fatalf("cursors after the replay %d, %d; want both %d", c2, sc2, c)
	}
}

// A definition that starts using a predicted trait after the insight run
// sees the stored predictions (backfill and dry run), and they win over an
// event trait of the same key, as on the profile API.
func TestDefinitionOnEarlierPredictions(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.put(kith.KindAudience, "everyone", `traits.plan exists`)
	r.settle()
	var msgs []kith.Message
	for i, tr := range []string{`{"plan":"pro"}`, `{"plan":"pro","p_alive":0.1}`, `{"plan":"pro","p_alive":0.1}`} {
		user := fmt.Sprintf("u%d", i+1)
		msgs = append(msgs, kith.Message{SourceID: "src", MessageID: "id-" + user, Type: "identify", UserID: user,
			Timestamp: r.now.Add(-time.Hour), ReceivedAt: r.now,
			Raw: json.RawMessage(`{"type":"identify","userId":"` + user + `","traits":` + tr + `}`)})
	}
	r.append(msgs)
	r.settle()
	ids := r.members("everyone")
	if len(ids) != 3 {
		t.Fatalf("everyone = %v", ids)
	}
	// Predictions for the first two profiles; the third keeps its event
	// value 0.1.
	if err := r.store.WriteInsights(ctx, "run1", r.now, []kith.ProfileInsights{
		{ProfileID: ids[0], Traits: map[string]json.RawMessage{"p_alive": json.RawMessage(`0.2`)}},
		{ProfileID: ids[1], Traits: map[string]json.RawMessage{"p_alive": json.RawMessage(`0.9`)}},
	}); err != nil {
		t.Fatal(err)
	}
	n, _, err := r.eng.DryRun(ctx, `traits.p_alive < 0.5`, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	r.put(kith.KindAudience, "at_risk", `traits.p_alive < 0.5`)
	r.settle()
	got := r.members("at_risk")
	want := []string{ids[0], ids[2]}
	slices.Sort(want)
	if !slices.Equal(got, want) || n != 2 {
		t.Fatalf("at_risk = %v (dry run %d), want %v: predictions written before the definition count, and win over event values", got, n, want)
	}
}
