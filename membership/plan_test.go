package membership_test

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/membership"
	"github.com/kithcdp/kith/storetest"
)

// The planner is held to storetest.AudienceModel, the model the
// conformance suite holds both stores to: after every batch, what the
// plan wrote (kept by a store in maps, below) must read back as what the
// model says, and a batch the model refuses must be refused with the same
// message. This test lives in package membership_test, so importing
// storetest makes no cycle.

// store is the simplest store of what a plan writes: profile rows by id,
// member chunks, sizes and history rows, as a store keeps them.
type store struct {
	rows    map[string]*profileRow
	chunks  map[chunkKey][]byte
	sizes   map[string]int64
	history []membership.HistoryRow // with IDs, as read back
	nextOrd int64                   // the next free ordinal
	nextSeq int64                   // the next history seq
}

type profileRow struct {
	ord      int64
	members  []byte // nil for NULL
	state    []byte // nil for NULL
	hasState bool
}

type chunkKey struct {
	audience string
	chunk    int64
}

func newStore() *store {
	return &store{rows: map[string]*profileRow{}, chunks: map[chunkKey][]byte{}, sizes: map[string]int64{}, nextOrd: 1, nextSeq: 1}
}

// reader hands a plan the stored rows of a batch, in pages, the way some
// store might: the test runs each.
type reader struct {
	name string
	read func(s *store, p *membership.Plan, rng *rand.Rand) [][]membership.StoredRow
}

// named returns the stored rows of the profiles p names, in p's order.
func (s *store) named(p *membership.Plan) []membership.StoredRow {
	var out []membership.StoredRow
	for _, id := range p.IDs() {
		if r, ok := s.rows[id]; ok {
			out = append(out, membership.StoredRow{Ord: r.ord, ID: id, Members: r.members, HasState: r.hasState})
		}
	}
	return out
}

var readers = []reader{
	{"all at once", func(s *store, p *membership.Plan, _ *rand.Rand) [][]membership.StoredRow {
		return [][]membership.StoredRow{s.named(p)}
	}},
	{"by id, three a page", func(s *store, p *membership.Plan, _ *rand.Rand) [][]membership.StoredRow {
		rows := slices.SortedFunc(slices.Values(s.named(p)), func(a, b membership.StoredRow) int { return strings.Compare(a.ID, b.ID) })
		return slices.Collect(slices.Chunk(rows, 3))
	}},
	{"whole table by ordinal", func(s *store, _ *membership.Plan, _ *rand.Rand) [][]membership.StoredRow {
		var rows []membership.StoredRow
		for _, id := range s.byOrd() {
			r := s.rows[id]
			rows = append(rows, membership.StoredRow{Ord: r.ord, ID: id, Members: r.members, HasState: r.hasState})
		}
		return slices.Collect(slices.Chunk(rows, 7))
	}},
	{"shuffled, some twice", func(s *store, p *membership.Plan, rng *rand.Rand) [][]membership.StoredRow {
		rows := s.named(p)
		for _, r := range rows {
			if rng.IntN(3) == 0 {
				rows = append(rows, r)
			}
		}
		rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		return slices.Collect(slices.Chunk(rows, 1+rng.IntN(5)))
	}},
}

// byOrd returns the stored profiles in ordinal order.
func (s *store) byOrd() []string {
	return slices.SortedFunc(maps.Keys(s.rows), func(a, b string) int { return cmp.Compare(s.rows[a].ord, s.rows[b].ord) })
}

// apply plans b over the store, reading its rows with rd, and writes the
// plan's rows unless it reports a conflict, checking on the way that each
// write is one the store can carry out.
func (s *store) apply(t *testing.T, b kith.AudienceBatch, rd reader, rng *rand.Rand) (*membership.Plan, error) {
	t.Helper()
	p := membership.NewPlan(&b)
	for _, page := range rd.read(s, p, rng) {
		if err := p.Found(page); err != nil {
			t.Fatalf("Found: %v", err)
		}
	}
	var unread []string
	for _, id := range p.IDs() {
		if s.rows[id] == nil {
			unread = append(unread, id)
		}
	}
	if got := p.NotFound(); !slices.Equal(got, unread) {
		t.Fatalf("NotFound = %v, want %v", got, unread)
	}
	fresh := p.NewProfiles()
	if err := p.Finish(s.nextOrd); err != nil {
		return p, err
	}
	s.write(t, p, fresh)
	return p, nil
}

// write carries out what p says, failing the test on a write no store
// could do (an update of a row that is not there, an ordinal taken twice,
// rows out of ordinal order, a history seq out of turn).
func (s *store) write(t *testing.T, p *membership.Plan, fresh int) {
	t.Helper()
	w := p.Rows()
	written := map[string]bool{}
	kinds := []struct {
		name string
		rows []membership.Row
	}{{"Both", w.Both}, {"States", w.States}, {"Members", w.Members}, {"Deletes", w.Deletes}}
	ords := map[int64]string{}
	for id, r := range s.rows {
		ords[r.ord] = id
	}
	for _, k := range kinds {
		if !slices.IsSortedFunc(k.rows, func(a, b membership.Row) int { return cmp.Compare(a.Ord, b.Ord) }) {
			t.Errorf("Rows().%s are not in ordinal order", k.name)
		}
		for _, r := range k.rows {
			id := p.ID(r)
			if written[id] {
				t.Fatalf("profile %s written twice", id)
			}
			written[id] = true
			old := s.rows[id]
			switch {
			case old != nil && old.ord != r.Ord:
				t.Fatalf("%s: row of %s at ordinal %d, stored at %d", k.name, id, r.Ord, old.ord)
			case old == nil && k.name != "Both":
				t.Fatalf("%s: %s has no row", k.name, id)
			case old == nil && (r.Ord < s.nextOrd || r.Ord >= s.nextOrd+int64(fresh) || ords[r.Ord] != ""):
				t.Fatalf("new profile %s at ordinal %d: want a free one of the %d from %d", id, r.Ord, fresh, s.nextOrd)
			}
			ords[r.Ord] = id
			var members []byte
			if k.name == "Both" || k.name == "Members" {
				members = p.AppendMembers(nil, r)
			}
			switch k.name {
			case "Both":
				s.rows[id] = &profileRow{ord: r.Ord, members: members, state: p.State(r), hasState: p.State(r) != nil}
			case "States":
				old.state, old.hasState = p.State(r), p.State(r) != nil
			case "Members":
				old.members = members
			case "Deletes":
				delete(s.rows, id)
			}
		}
	}
	s.nextOrd += int64(fresh)

	chunks := p.Chunks()
	if !slices.IsSortedFunc(chunks, func(a, b membership.ChunkChange) int {
		return cmp.Or(strings.Compare(a.Audience, b.Audience), cmp.Compare(a.Chunk, b.Chunk))
	}) {
		t.Error("Chunks() are not by audience and chunk")
	}
	for _, c := range chunks {
		k := chunkKey{c.Audience, c.Chunk}
		old := s.chunks[k]
		bits, write, err := c.Apply(old)
		switch {
		case err != nil:
			t.Fatalf("chunk %v: %v", k, err)
		case !write && !bytes.Equal(bits, old):
			t.Fatalf("chunk %v changed, but Apply says it need not be written", k)
		case write && bits == nil && old == nil:
			t.Fatalf("chunk %v: a delete of a row that is not there", k)
		case write && bits == nil:
			delete(s.chunks, k)
		case write:
			s.chunks[k] = bits
		}
	}
	sizes := p.Sizes()
	for i, sz := range sizes {
		if sz.N == 0 || i > 0 && sizes[i-1].Audience >= sz.Audience {
			t.Errorf("Sizes() = %+v: want changes only, by audience", sizes)
		}
		s.sizes[sz.Audience] += sz.N
	}
	for _, r := range p.History(s.nextSeq) {
		if r.Seq != s.nextSeq || r.N < 1 || (r.N == 1) != (r.ProfileIDs == nil) {
			t.Fatalf("history row %+v at seq %d", r, s.nextSeq)
		}
		if r.N > 1 {
			r.IDs, r.ProfileIDs = membership.EncodeIDs(r.ProfileIDs), nil
		}
		s.history = append(s.history, r)
		s.nextSeq += r.N
	}
}

// snapshot reads the store back as the model describes a store.
func (s *store) snapshot(t *testing.T) storetest.AudienceSnapshot {
	t.Helper()
	snap := storetest.AudienceSnapshot{
		States: map[string][]byte{}, Memberships: map[string][]kith.Member{}, Members: map[string][]string{},
		Sizes: maps.Clone(s.sizes), Order: s.byOrd(),
	}
	ords := map[int64]string{}
	for _, id := range snap.Order {
		r := s.rows[id]
		ords[r.ord] = id
		if r.hasState {
			snap.States[id] = r.state
		}
		if r.members != nil {
			ms, err := membership.Members(id, r.members)
			if err != nil || len(ms) == 0 {
				t.Fatalf("memberships of %s: %v, %v (an empty list is stored as NULL)", id, ms, err)
			}
			snap.Memberships[id] = ms
		}
		if !r.hasState && r.members == nil {
			t.Errorf("%s has a row with neither a state nor a membership", id)
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(s.chunks), func(a, b chunkKey) int {
		return cmp.Or(strings.Compare(a.audience, b.audience), cmp.Compare(a.chunk, b.chunk))
	}) {
		var c membership.Chunk
		if err := membership.DecodeChunk(s.chunks[k], &c); err != nil || c.Count() == 0 {
			t.Fatalf("chunk %v: %v, %d members (an empty chunk has no row)", k, err, c.Count())
		}
		c.Each(0, func(i int64) bool {
			id, ok := ords[k.chunk<<membership.ChunkShift+i]
			if !ok {
				t.Fatalf("chunk %v holds ordinal %d, which no profile has", k, k.chunk<<membership.ChunkShift+i)
			}
			snap.Members[k.audience] = append(snap.Members[k.audience], id)
			return true
		})
	}
	for _, r := range s.history {
		var err error
		if snap.History, err = r.Expand(snap.History, 0, math.MaxInt); err != nil {
			t.Fatal(err)
		}
		if r.N > 1 && r.N <= 100 {
			for i, c := range snap.History[len(snap.History)-int(r.N):] {
				if seq, err := r.Find(c.ProfileID); err != nil || seq != r.Seq+int64(i) {
					t.Fatalf("Find(%s) in the row at seq %d = %d, %v; want %d", c.ProfileID, r.Seq, seq, err, r.Seq+int64(i))
				}
			}
		}
	}
	return snap
}

// memberOf returns, from the store's rows, who is a member of what.
func (s *store) memberOf(t *testing.T) map[[2]string]bool {
	out := map[[2]string]bool{}
	for id, r := range s.rows {
		if err := membership.EachMember(r.members, func(a []byte, _ int64) { out[[2]string{string(a), id}] = true }); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// step plans and writes b and checks the outcome against the model: the
// same error, or what the store holds afterwards.
func step(t *testing.T, s *store, m *storetest.AudienceModel, b kith.AudienceBatch, rd reader, rng *rand.Rand) (*membership.Plan, error) {
	t.Helper()
	p, err := s.apply(t, b, rd, rng)
	want := m.Conflict(b)
	if kith.ErrorCode(err) != kith.ErrorCode(want) || kith.ErrorMessage(err) != kith.ErrorMessage(want) {
		t.Fatalf("reading %s: planned with error %v, want %v", rd.name, err, want)
	}
	if err == nil {
		m.Apply(b)
	}
	m.Check(t, s.snapshot(t))
	return p, err
}

// at is minute m of a fixed day, in UTC.
func at(m int) time.Time { return time.Date(2026, 5, 1, 0, m, 0, 0, time.UTC) }

func enter(audience, profile string, minute int) kith.MembershipChange {
	return kith.MembershipChange{Audience: audience, ProfileID: profile, Entered: true, At: at(minute), Cause: "event", CauseSeq: int64(100 + minute)}
}

func exit(audience, profile string, minute int) kith.MembershipChange {
	return kith.MembershipChange{Audience: audience, ProfileID: profile, At: at(minute), Cause: "expiry"}
}

func bulk(audience string, entered bool, minute int, profiles ...string) kith.BulkChange {
	return kith.BulkChange{Audience: audience, Entered: entered, ProfileIDs: profiles, At: at(minute), Cause: "backfill"}
}

func state(id, st string) kith.ProfileState {
	return kith.ProfileState{ProfileID: id, State: []byte(st)}
}

// describe lists the rows p writes, by kind, in a form a test states.
func describe(p *membership.Plan) string {
	w := p.Rows()
	var out []string
	for _, k := range []struct {
		name string
		rows []membership.Row
	}{{"both", w.Both}, {"states", w.States}, {"members", w.Members}, {"deletes", w.Deletes}} {
		if len(k.rows) == 0 {
			continue
		}
		var ids []string
		for _, r := range k.rows {
			ids = append(ids, fmt.Sprintf("%s@%d", p.ID(r), r.Ord))
		}
		out = append(out, k.name+" "+strings.Join(ids, " "))
	}
	return strings.Join(out, "; ")
}

func TestPlan(t *testing.T) {
	setup := []kith.AudienceBatch{
		{States: []kith.ProfileState{state("p1", "one"), state("p2", "two")}},
		{Changes: []kith.MembershipChange{enter("vip", "p1", 1), enter("vip", "p2", 2), enter("churn", "p3", 3)}},
	}
	// After the setup: p1@1 (state, vip), p2@2 (state, vip), p3@3 (churn).
	tests := []struct {
		name   string
		batch  kith.AudienceBatch
		err    string // the conflict's message; "" for none
		fresh  int    // how many profiles are stored for the first time
		writes string // the rows written, as describe puts them
		sizes  string
		seqs   []int64 // the history rows' N
	}{
		{name: "new profiles take ordinals in the order first named", batch: kith.AudienceBatch{
			States:  []kith.ProfileState{state("b", "b")},
			Changes: []kith.MembershipChange{enter("a1", "z", 4), enter("a1", "c", 5), enter("a1", "p3", 6)},
			Bulk:    []kith.BulkChange{bulk("a1", true, 7, "y", "p1", "b")},
		}, fresh: 4, writes: "both b@4 z@5 c@6 y@7; members p1@1 p3@3", sizes: "a1+6", seqs: []int64{1, 1, 1, 3}},
		{name: "deleting a state that was never stored stores nothing", batch: kith.AudienceBatch{
			States: []kith.ProfileState{{ProfileID: "x"}},
		}},
		{name: "an exit and a re-entry rewrite the memberships alone", batch: kith.AudienceBatch{
			Changes: []kith.MembershipChange{exit("vip", "p1", 4), enter("vip", "p1", 5)},
		}, writes: "members p1@1", seqs: []int64{1, 1}},
		{name: "an entry and an exit of a new profile take an ordinal and store no row", batch: kith.AudienceBatch{
			Changes: []kith.MembershipChange{enter("vip", "n", 4), exit("vip", "n", 5)},
		}, fresh: 1, seqs: []int64{1, 1}},
		{name: "a state and memberships change in one row", batch: kith.AudienceBatch{
			States:  []kith.ProfileState{state("p1", "new")},
			Changes: []kith.MembershipChange{exit("vip", "p1", 4)},
		}, writes: "both p1@1", sizes: "vip-1", seqs: []int64{1}},
		{name: "a state alone", batch: kith.AudienceBatch{
			States: []kith.ProfileState{state("p3", "three"), state("p2", "")},
		}, writes: "states p2@2 p3@3"},
		{name: "a profile left with nothing loses its row", batch: kith.AudienceBatch{
			States: []kith.ProfileState{{ProfileID: "p1"}},
			Bulk:   []kith.BulkChange{bulk("vip", false, 4, "p2", "p1"), bulk("churn", false, 4, "p3")},
		}, writes: "members p2@2; deletes p1@1 p3@3", sizes: "churn-1 vip-2", seqs: []int64{2, 1}},
		{name: "a bulk change of none has no seq", batch: kith.AudienceBatch{
			Bulk: []kith.BulkChange{bulk("vip", true, 4), bulk("vip", true, 4, "p3")},
		}, writes: "members p3@3", sizes: "vip+1", seqs: []int64{1}},

		{name: "entry for a member", batch: kith.AudienceBatch{
			Changes: []kith.MembershipChange{enter("vip", "p3", 4), enter("vip", "p1", 5)},
		}, err: `change 1: profile p1 entered audience "vip" but is already a member`},
		{name: "exit for a non-member of an unknown audience", batch: kith.AudienceBatch{
			Changes: []kith.MembershipChange{exit("nope", "p1", 4)},
		}, err: `change 0: profile p1 exited audience "nope" but is not a member`},
		{name: "the first conflict in batch order, whichever row is read first", batch: kith.AudienceBatch{
			Changes: []kith.MembershipChange{exit("vip", "p3", 4), exit("churn", "p1", 5)},
		}, err: `change 0: profile p3 exited audience "vip" but is not a member`},
		{name: "the first conflict in a bulk change, whichever row is read first", batch: kith.AudienceBatch{
			Bulk: []kith.BulkChange{bulk("vip", true, 4, "p3", "p2", "p1")},
		}, err: `bulk change 0: profile p2 entered audience "vip" but is already a member`},
		{name: "a change's conflict before a bulk change's", batch: kith.AudienceBatch{
			Changes: []kith.MembershipChange{enter("churn", "p2", 4), exit("churn", "p2", 5), exit("churn", "p2", 6)},
			Bulk:    []kith.BulkChange{bulk("vip", true, 7, "p1")},
		}, err: `change 2: profile p2 exited audience "churn" but is not a member`},
		{name: "a profile twice in a bulk change", batch: kith.AudienceBatch{
			Bulk: []kith.BulkChange{bulk("vip", true, 4, "n", "p3", "n")},
		}, err: `bulk change 0: profile n entered audience "vip" but is already a member`},
		{name: "another profile's conflict between a profile's two places", batch: kith.AudienceBatch{
			Bulk: []kith.BulkChange{bulk("vip", true, 4, "n", "p1", "n")},
		}, err: `bulk change 0: profile p1 entered audience "vip" but is already a member`},
		{name: "a new profile's exit, after its valid entry and exit", batch: kith.AudienceBatch{
			Bulk: []kith.BulkChange{bulk("new", true, 4, "n1", "n2"), bulk("new", false, 5, "n2"), bulk("new", false, 6, "n2")},
		}, err: `bulk change 2: profile n2 exited audience "new" but is not a member`},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(1, 2))
				s, m := newStore(), storetest.NewAudienceModel()
				for _, b := range setup {
					if _, err := step(t, s, m, b, rd, rng); err != nil {
						t.Fatal(err)
					}
				}
				nextSeq := s.nextSeq
				p, err := step(t, s, m, tt.batch, rd, rng)
				if kith.ErrorMessage(err) != tt.err && !(err == nil && tt.err == "") {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if err != nil {
					if kith.ErrorCode(err) != kith.ECONFLICT {
						t.Fatalf("error %v, want ECONFLICT", err)
					}
					return
				}
				if got := p.NewProfiles(); got != tt.fresh {
					t.Errorf("NewProfiles() = %d, want %d", got, tt.fresh)
				}
				if got := describe(p); got != tt.writes {
					t.Errorf("rows written: %q, want %q", got, tt.writes)
				}
				var sizes []string
				for _, sz := range p.Sizes() {
					sizes = append(sizes, fmt.Sprintf("%s%+d", sz.Audience, sz.N))
				}
				if got := strings.Join(sizes, " "); got != tt.sizes {
					t.Errorf("sizes %q, want %q", got, tt.sizes)
				}
				var ns []int64
				for _, r := range s.history {
					if r.Seq >= nextSeq {
						ns = append(ns, r.N)
					}
				}
				if !slices.Equal(ns, tt.seqs) {
					t.Errorf("history rows of %v changes, want %v", ns, tt.seqs)
				}
			})
		}
	}
}

// TestPlanRandom replays many random batches, each read by a random
// reader, against the model: entries, exits and re-entries by single and
// bulk changes, states set, emptied and deleted, new profiles, profiles
// that lose their rows and come back, and now and then a change that
// contradicts the memberships (an entry for a member, an exit for a
// non-member, a profile twice in a bulk change), which must be refused as
// the model refuses it.
func TestPlanRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(20260501, 7))
	auds := []string{"a", "b", "Alpha", "zeta", "a b"}
	zones := []*time.Location{time.UTC, time.FixedZone("CET", 3600)}
	batches, refused := 0, 0
	for run := range 20 {
		s, m := newStore(), storetest.NewAudienceModel()
		ids := make([]string, 30+rng.IntN(40))
		for i := range ids {
			ids[i] = fmt.Sprintf("p%03d", rng.IntN(1000))
		}
		minute := 0
		for range 100 {
			cur := s.memberOf(t)
			var b kith.AudienceBatch
			when := func() time.Time {
				minute += rng.IntN(3)
				return at(minute).In(zones[rng.IntN(len(zones))])
			}
			for range rng.IntN(4) {
				st := kith.ProfileState{ProfileID: ids[rng.IntN(len(ids))]}
				switch rng.IntN(4) {
				case 0: // nil deletes it
				case 1:
					st.State = []byte{}
				default:
					st.State = fmt.Appendf(nil, "s%d", rng.IntN(100))
				}
				b.States = append(b.States, st)
			}
			for range rng.IntN(6) {
				id, a := ids[rng.IntN(len(ids))], auds[rng.IntN(len(auds))]
				key := [2]string{a, id}
				entered := !cur[key]
				if rng.IntN(40) == 0 {
					entered = !entered
				}
				cur[key] = entered
				b.Changes = append(b.Changes, kith.MembershipChange{Audience: a, ProfileID: id, Entered: entered, At: when(), Cause: "event", CauseSeq: int64(rng.IntN(50))})
			}
			for range rng.IntN(3) {
				bc := kith.BulkChange{Audience: auds[rng.IntN(len(auds))], Entered: rng.IntN(2) == 0, At: when(), Cause: "backfill"}
				for _, k := range rng.Perm(len(ids))[:rng.IntN(len(ids))] {
					id := ids[k]
					if key := [2]string{bc.Audience, id}; cur[key] != bc.Entered && !slices.Contains(bc.ProfileIDs, id) || rng.IntN(200) == 0 {
						bc.ProfileIDs = append(bc.ProfileIDs, id)
						cur[key] = bc.Entered
					}
				}
				b.Bulk = append(b.Bulk, bc)
			}
			rd := readers[rng.IntN(len(readers))]
			t.Run(fmt.Sprintf("run %d batch %d", run, batches), func(t *testing.T) {
				if _, err := step(t, s, m, b, rd, rng); err != nil {
					refused++
				}
			})
			if t.Failed() {
				t.FailNow()
			}
			batches++
		}
	}
	// The batches must have tried the refusals too, not only valid ones.
	if refused < 50 || refused > batches/2 {
		t.Errorf("%d of %d batches refused: the generator does not mix valid and conflicting batches", refused, batches)
	}
}

// TestPlanManyProfiles runs batches over more profiles than a member
// chunk holds and than the plan's index starts with room for, so that
// ordinals cross chunks and the index grows.
func TestPlanManyProfiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = fmt.Sprintf("p_%012d", i)
	}
	every := func(k, from int) []string {
		var out []string
		for i := from; i < len(ids); i += k {
			out = append(out, ids[i])
		}
		return out
	}
	var states []kith.ProfileState
	for _, id := range ids[:3000] {
		states = append(states, state(id, "s"+id))
	}
	shuffled := slices.Clone(ids)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	batches := []kith.AudienceBatch{
		{States: states, Bulk: []kith.BulkChange{bulk("all", true, 1, shuffled...), bulk("even", true, 2, every(2, 0)...)}},
		{Changes: []kith.MembershipChange{exit("all", ids[1], 3)}, Bulk: []kith.BulkChange{
			bulk("all", false, 4, every(3, 3)...), bulk("all", true, 5, ids[3], ids[9999]), bulk("even", false, 6, ids[2], ids[4096]),
		}},
		{Bulk: []kith.BulkChange{bulk("all", false, 7, every(3, 1)[1:]...), bulk("odd", true, 8, every(2, 1)...)}},
		{Bulk: []kith.BulkChange{bulk("even", false, 9, slices.DeleteFunc(every(2, 0), func(id string) bool { return id == ids[2] || id == ids[4096] })...)}},
		// A conflict at the end of a large valid batch.
		{Bulk: []kith.BulkChange{bulk("odd", false, 10, every(2, 1)...), bulk("odd", true, 11, ids[1], ids[3], ids[1])}},
	}
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) {
			s, m := newStore(), storetest.NewAudienceModel()
			for i, b := range batches {
				_, err := step(t, s, m, b, rd, rng)
				if last := i == len(batches)-1; last != (err != nil) {
					t.Fatalf("batch %d: %v", i, err)
				}
			}
		})
	}
}

func TestPlanCorruptMemberships(t *testing.T) {
	p := membership.NewPlan(&kith.AudienceBatch{Changes: []kith.MembershipChange{enter("vip", "p1", 0)}})
	err := p.Found([]membership.StoredRow{{Ord: 1, ID: "p1", Members: []byte{9, 'x'}}})
	if err == nil || !strings.Contains(err.Error(), "profile p1") {
		t.Fatalf("Found with corrupt memberships: %v, want an error naming p1", err)
	}
	// The row of a profile the batch does not name is not decoded.
	p = membership.NewPlan(&kith.AudienceBatch{Changes: []kith.MembershipChange{enter("vip", "p1", 0)}})
	if err := p.Found([]membership.StoredRow{{Ord: 2, ID: "p2", Members: []byte{9, 'x'}}}); err != nil {
		t.Fatalf("Found with another profile's corrupt memberships: %v", err)
	}
}
