package audience

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/kithcdp/kith"
)

var keyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,99}$`)

// Prepare validates a definition as a user sent it — the text form in Text
// or the JSON tree in Condition, not both — and fills in the other form.
func Prepare(d kith.Definition) (kith.Definition, error) {
	d, _, err := prepare(d)
	return d, err
}

// KeyProblem says what is wrong with an audience or computed-trait key
// ("" if nothing): the rule every definition and every reference to one
// (a destination's audiences) is held to.
func KeyProblem(key string) string {
	if !keyRE.MatchString(key) {
		return fmt.Sprintf("key %q: want 1-100 characters a-z, 0-9, _ . - (starting with a letter or digit)", key)
	}
	return ""
}

// prepare is Prepare, also returning the parsed tree: a *Node for an
// audience, an *Aggregate for a computed trait.
func prepare(d kith.Definition) (kith.Definition, any, error) {
	bad := func(format string, args ...any) (kith.Definition, any, error) {
		return d, nil, kith.Errorf(kith.EINVALID, format, args...)
	}
	if why := KeyProblem(d.Key); why != "" {
		return bad("%s", why)
	}
	hasCond := len(d.Condition) > 0 && string(d.Condition) != "null"
	if (d.Text == "") == !hasCond {
		return bad("give the definition as text (\"definition\") or as a JSON tree (\"condition\"), one of them")
	}
	var tree any
	var err error
	switch d.Kind {
	case kith.KindAudience:
		var n *Node
		if d.Text != "" {
			n, err = Parse(d.Text)
		} else {
			n, err = ParseJSON(d.Condition)
		}
		if err == nil {
			tree, d.Text = n, Format(n)
		}
	case kith.KindComputedTrait:
		var a *Aggregate
		if d.Text != "" {
			a, err = ParseAggregate(d.Text)
		} else {
			a, err = ParseAggregateJSON(d.Condition)
		}
		if err == nil {
			tree, d.Text = a, FormatAggregate(a)
		}
	default:
		return bad("unknown kind %q", d.Kind)
	}
	if err != nil {
		return bad("%s %q: %v", d.Kind, d.Key, err)
	}
	if d.Condition, err = json.Marshal(tree); err != nil {
		return d, nil, fmt.Errorf("audience: encode %s %q: %w", d.Kind, d.Key, err)
	}
	return d, tree, nil
}

// Put creates or replaces a definition and starts its backfill; it
// returns the definition as stored.
func (e *Engine) Put(ctx context.Context, d kith.Definition) (kith.Definition, error) {
	d, err := Prepare(d)
	if err != nil {
		return d, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now().UTC()
	defs := slices.Clone(e.defs)
	i := slices.IndexFunc(defs, func(x kith.Definition) bool { return x.Kind == d.Kind && x.Key == d.Key })
	d.CreatedAt, d.UpdatedAt, d.Version = now, now, 1
	if i >= 0 {
		if bytes.Equal(defs[i].Condition, d.Condition) {
			return defs[i], ErrUnchanged
		}
		d.CreatedAt, d.Version = defs[i].CreatedAt, defs[i].Version+1
		defs[i] = d
	} else {
		defs = append(defs, d)
	}
	d.Backfill = kith.Backfill{State: kith.BackfillPending}
	if i >= 0 {
		defs[i] = d
	} else {
		defs[len(defs)-1] = d
	}
	prog, err := Compile(defs)
	if err != nil {
		return d, kith.Errorf(kith.EINVALID, "%v", err)
	}
	if err := e.store.SaveDefinition(ctx, d); err != nil {
		return d, fmt.Errorf("audience: save definition: %w", err)
	}
	e.defs, e.prog, e.reprog = defs, prog, true
	e.signal()
	return d, nil
}

// Delete removes a definition; its members leave. An audience another one
// refers to cannot be deleted (ECONFLICT).
func (e *Engine) Delete(ctx context.Context, kind, key string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	i := slices.IndexFunc(e.defs, func(x kith.Definition) bool { return x.Kind == kind && x.Key == key })
	if i < 0 {
		return kith.Errorf(kith.ENOTFOUND, "no %s %q", kind, key)
	}
	defs := slices.Delete(slices.Clone(e.defs), i, i+1)
	prog, err := Compile(defs)
	if err != nil {
		return kith.Errorf(kith.ECONFLICT, "cannot delete %s %q: %v", kind, key, err)
	}
	if err := e.store.DeleteDefinition(ctx, kind, key); err != nil {
		return err
	}
	e.defs, e.prog, e.reprog = defs, prog, true
	e.signal()
	return nil
}

// Definitions lists the definitions of a kind with their backfill
// progress.
func (e *Engine) Definitions(kind string) []kith.Definition {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []kith.Definition
	for _, d := range e.defs {
		if d.Kind == kind {
			out = append(out, d)
		}
	}
	return out
}

// Definition returns one definition; ENOTFOUND if absent.
func (e *Engine) Definition(kind, key string) (kith.Definition, error) {
	for _, d := range e.Definitions(kind) {
		if d.Key == key {
			return d, nil
		}
	}
	return kith.Definition{}, kith.Errorf(kith.ENOTFOUND, "no %s %q", kind, key)
}

// progress updates the backfill record of the pending definitions.
func (e *Engine) progress(ctx context.Context, pending map[[2]string]int64, f func(*kith.Backfill)) {
	e.mu.Lock()
	var save []kith.Definition
	for i := range e.defs {
		d := &e.defs[i]
		if v, ok := pending[[2]string{d.Kind, d.Key}]; ok && v == d.Version {
			f(&d.Backfill)
			save = append(save, *d)
		}
	}
	e.mu.Unlock()
	// The API reads progress from memory; the stored record (a durable
	// write per definition) follows at most once a second, and always
	// when a backfill starts, ends or fails.
	if len(save) > 0 && save[0].Backfill.State == kith.BackfillRunning && save[0].Backfill.Done > 0 && time.Since(e.progressSaved) < time.Second {
		return
	}
	e.progressSaved = time.Now()
	for _, d := range save {
		if err := e.store.SaveDefinition(ctx, d); err != nil {
			e.log.Warn("audience: save backfill progress", "key", d.Key, "err", err)
		}
	}
}

// backfill brings every profile in line with the current definitions: it
// computes new aggregates from the whole log, loads newly referenced
// traits, and evaluates every profile, recording entries and exits.
func (e *Engine) backfill(ctx context.Context) error {
	e.mu.Lock()
	prog, defs := e.prog, slices.Clone(e.defs)
	e.mu.Unlock()
	pending := map[[2]string]int64{}
	var done []kith.Definition
	for _, d := range defs {
		if d.Backfill.State == kith.BackfillDone {
			done = append(done, d)
		} else {
			pending[[2]string{d.Kind, d.Key}] = d.Version
		}
	}
	start := e.now().UTC()
	e.progress(ctx, pending, func(b *kith.Backfill) {
		*b = kith.Backfill{State: kith.BackfillRunning, StartedAt: start}
	})
	err := e.runBackfill(ctx, prog, done, pending)
	end := e.now().UTC()
	e.progress(ctx, pending, func(b *kith.Backfill) {
		b.FinishedAt = end
		if err != nil {
			b.State, b.Error = kith.BackfillFailed, err.Error()
		} else {
			b.State, b.Done, b.Error = kith.BackfillDone, b.Total, ""
		}
	})
	if err != nil && ctx.Err() == nil {
		keys := make([]string, 0, len(pending))
		for k := range pending {
			keys = append(keys, k[0]+" "+k[1])
		}
		slices.Sort(keys)
		e.log.Error("audience: backfill failed; it is retried", "definitions", keys, "err", err)
	}
	return err
}

// backfilled returns the done definitions in a form that compiles on its
// own, into the program of what the stored states already hold: a done
// audience may refer to one being backfilled (redefined since), which is
// not among them. References hold no state (every membership is decided
// again at the end of a backfill), so each done audience keeps only its
// comparisons, aggregates and consents. A definition that does not parse
// is kept as it is, for Compile to report.
func backfilled(done []kith.Definition) []kith.Definition {
	out := make([]kith.Definition, 0, len(done))
	for _, d := range done {
		if d.Kind != kith.KindAudience {
			out = append(out, d)
			continue
		}
		n, err := ParseJSON(d.Condition)
		if err != nil {
			out = append(out, d)
			continue
		}
		var leaves []*Node
		var walk func(*Node)
		walk = func(n *Node) {
			switch {
			case n.Audience != "":
			case n.And != nil || n.Or != nil:
				for _, c := range append(slices.Clip(n.And), n.Or...) {
					walk(c)
				}
			case n.Not != nil:
				walk(n.Not)
			default:
				leaves = append(leaves, n)
			}
		}
		walk(n)
		if len(leaves) == 0 {
			continue // nothing but references
		}
		if cond, err := json.Marshal(&Node{Or: leaves}); err == nil {
			d.Condition = cond
		} // else kept whole: Compile reports what is wrong with it
		out = append(out, d)
	}
	return out
}

func (e *Engine) runBackfill(ctx context.Context, prog *Program, done []kith.Definition, pending map[[2]string]int64) error {
	// What the stored states hold already. A program that does not
	// compile fails the backfill: taking it for empty would fold every
	// event again into the aggregates the states hold, counting it twice.
	old, err := Compile(backfilled(done))
	if err != nil {
		return fmt.Errorf("audience: compile the definitions already backfilled: %w", err)
	}
	only, newKeys := prog.needs(old)
	now := e.now()
	if len(only) > 0 {
		err := e.scanLog(ctx, prog, only, e.cursor.Load(), func(ids []string, apply func(map[string]*State)) error {
			w := e.newWork(ctx)
			if err := w.load(ids); err != nil {
				return err
			}
			apply(w.states)
			for _, id := range ids {
				w.touched[id] = 0
			}
			// States only: memberships are decided below, once.
			return w.commitStates()
		})
		if err != nil {
			return err
		}
	}
	if len(newKeys) > 0 {
		// Newly referenced traits: the event traits, then the latest
		// predictions, which win (as on the profile API).
		for _, predicted := range []bool{false, true} {
			var ids []string
			vals := map[string]map[string]json.RawMessage{}
			flush := func() error {
				w := e.newWork(ctx)
				if err := w.load(ids); err != nil {
					return err
				}
				for _, id := range ids {
					for k, v := range vals[id] {
						w.states[id].SetTrait(k, TraitValue{V: v, P: predicted})
					}
					w.touched[id] = 0
				}
				ids, vals = nil, map[string]map[string]json.RawMessage{}
				return w.commitStates()
			}
			collect := func(id string, t map[string]json.RawMessage) error {
				ids = append(ids, id)
				vals[id] = t
				if len(ids) >= scanPage {
					return flush()
				}
				return nil
			}
			var err error
			if predicted {
				err = e.store.ScanPredicted(ctx, newKeys, collect)
			} else {
				err = e.store.ScanTraits(ctx, newKeys, collect)
			}
			if err == nil && len(ids) > 0 {
				err = flush()
			}
			if err != nil {
				return fmt.Errorf("audience: load traits: %w", err)
			}
		}
	}
	// Evaluate everyone, in the store's order, a page at a time, on every
	// core; entries and exits are recorded in bulk. Reading, deciding and
	// writing run as a pipeline: while one page is written the next is
	// decided and the one after it read.
	if err := e.flush(ctx); err != nil {
		return err
	}
	e.cache = nil
	type row struct {
		id  string
		raw []byte
		st  *State
	}
	type decided struct {
		b    kith.AudienceBatch
		rows []row
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan []row, 1)
	batches := make(chan decided, 1)
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	statesCursor := e.cursor.Load()
	go func() { // decide
		defer close(batches)
		for page := range pages {
			results := make([][]kith.MembershipChange, len(page))
			changed := make([]bool, len(page))
			var wg sync.WaitGroup
			workers := min(runtime.GOMAXPROCS(0), 4)
			for wkr := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := wkr; i < len(page); i += workers {
						results[i], changed[i] = decide(prog, page[i].id, page[i].st, now, "backfill", 0)
					}
				}()
			}
			wg.Wait()
			b := kith.AudienceBatch{StatesCursor: statesCursor}
			bulk := map[string]*kith.BulkChange{}
			var keys []string
			for i, r := range page {
				for _, ch := range results[i] {
					k := fmt.Sprintf("%s\x00%t\x00%s", ch.Audience, ch.Entered, ch.Cause)
					bc := bulk[k]
					if bc == nil {
						bc = &kith.BulkChange{Audience: ch.Audience, Entered: ch.Entered, At: ch.At, Cause: ch.Cause}
						bulk[k] = bc
						keys = append(keys, k)
					}
					bc.ProfileIDs = append(bc.ProfileIDs, r.id)
				}
				if changed[i] || r.raw == nil {
					b.States = append(b.States, kith.ProfileState{ProfileID: r.id, State: r.st.Encode()})
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				b.Bulk = append(b.Bulk, *bulk[k])
			}
			select {
			case batches <- decided{b: b, rows: page}:
			case <-pctx.Done():
				for range pages {
				}
				return
			}
		}
	}()
	var due []dueItem
	written := make(chan struct{})
	go func() { // write
		defer close(written)
		var doneN int64
		for d := range batches {
			if pctx.Err() != nil {
				continue // drain
			}
			if len(d.b.States) > 0 || len(d.b.Bulk) > 0 {
				if err := e.store.ApplyAudienceBatch(pctx, d.b); err != nil {
					fail(fmt.Errorf("audience: apply backfill: %w", err))
					continue
				}
			}
			for _, r := range d.rows {
				due = append(due, dueItem{at: r.st.Due, id: r.id})
			}
			doneN += int64(len(d.rows))
			n := doneN
			e.progress(pctx, pending, func(b *kith.Backfill) { b.Done, b.Total = n, max(b.Total, n) })
		}
	}()
	var page []row
	err = e.store.ScanStates(pctx, func(id string, raw []byte, members []kith.Member) error {
		st, err := loadState(raw, members)
		if err != nil {
			return err
		}
		page = append(page, row{id: id, raw: raw, st: st})
		if len(page) >= 20000 {
			select {
			case pages <- page:
			case <-pctx.Done():
				return pctx.Err()
			}
			page = nil
		}
		return nil
	})
	if err == nil && len(page) > 0 {
		select {
		case pages <- page:
		case <-pctx.Done():
		}
	}
	close(pages)
	<-written
	if err != nil {
		fail(err)
	}
	for _, d := range due { // the schedule is the engine goroutine's
		e.schedule(d.id, d.at)
	}
	return firstErr
}

// commitStates records the touched states (written behind) without
// deciding memberships.
func (w *work) commitStates() error {
	w.changes = nil
	if err := w.commit(0); err != nil {
		return err
	}
	if len(w.e.dirty) >= w.e.maxCache/2 {
		return w.e.flush(w.ctx)
	}
	return nil
}

// scanLog reads the log up to upto and folds the events into the slots in
// only, a page at a time: sink loads the page's profiles and calls apply.
func (e *Engine) scanLog(ctx context.Context, prog *Program, only map[string]bool, upto int64, sink func(ids []string, apply func(map[string]*State)) error) error {
	var after int64
	for after < upto {
		msgs, err := e.store.ReadLog(ctx, after, min(scanPage, int(upto-after)))
		if err != nil {
			return fmt.Errorf("audience: read log: %w", err)
		}
		if len(msgs) == 0 {
			return nil
		}
		after = msgs[len(msgs)-1].Seq
		var hit []kith.Message
		for _, m := range msgs {
			if prog.Matches(nameOf(m)) {
				hit = append(hit, m)
			}
		}
		if len(hit) == 0 {
			continue
		}
		owners, err := e.resolve(ctx, hit)
		if err != nil {
			return err
		}
		var ids []string
		for _, o := range owners {
			if o != "" {
				ids = append(ids, o)
			}
		}
		now := e.now()
		err = sink(ids, func(states map[string]*State) {
			for i, m := range hit {
				if owners[i] != "" {
					prog.ApplyOnly(states[owners[i]], EventOf(m), now, only)
				}
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// DryRun evaluates an audience condition over every profile without
// saving anything: its size and up to sample member ids. Aggregates no
// saved definition uses are computed from the log for the occasion.
func (e *Engine) DryRun(ctx context.Context, text string, cond json.RawMessage, sample int) (int64, []string, error) {
	d, err := Prepare(kith.Definition{Kind: kith.KindAudience, Key: "dry-run", Text: text, Condition: cond})
	if err != nil {
		return 0, nil, err
	}
	e.mu.Lock()
	defs := slices.Clone(e.defs)
	e.mu.Unlock()
	for i := range defs {
		if defs[i].Kind == kith.KindAudience && defs[i].Key == d.Key {
			defs = slices.Delete(defs, i, i+1)
			break
		}
	}
	base, err := Compile(defs)
	if err != nil {
		return 0, nil, err
	}
	prog, err := Compile(append(defs, d))
	if err != nil {
		return 0, nil, kith.Errorf(kith.EINVALID, "%v", err)
	}
	only, newKeys := prog.needs(base)
	extra := map[string]*State{}
	if len(only) > 0 {
		err := e.scanLog(ctx, prog, only, e.cursor.Load(), func(ids []string, apply func(map[string]*State)) error {
			for _, id := range ids {
				if extra[id] == nil {
					extra[id] = &State{}
				}
			}
			apply(extra)
			return nil
		})
		if err != nil {
			return 0, nil, err
		}
	}
	traits, predicted := map[string]map[string]json.RawMessage{}, map[string]map[string]json.RawMessage{}
	if len(newKeys) > 0 {
		err := e.store.ScanTraits(ctx, newKeys, func(id string, t map[string]json.RawMessage) error {
			traits[id] = t
			return nil
		})
		if err == nil {
			err = e.store.ScanPredicted(ctx, newKeys, func(id string, t map[string]json.RawMessage) error {
				predicted[id] = t
				return nil
			})
		}
		if err != nil {
			return 0, nil, err
		}
	}
	now := e.now()
	var size int64
	var ids []string
	err = e.store.ScanStates(ctx, func(id string, b []byte, members []kith.Member) error {
		st, err := loadState(b, members)
		if err != nil {
			return err
		}
		if x := extra[id]; x != nil {
			st.Merge(x)
		}
		for k, v := range traits[id] {
			st.SetTrait(k, TraitValue{V: v})
		}
		for k, v := range predicted[id] {
			st.SetTrait(k, TraitValue{V: v, P: true})
		}
		in, _ := prog.Evaluate(st, now)
		if in[d.Key] {
			size++
			if len(ids) < sample {
				ids = append(ids, id)
			}
		}
		return nil
	})
	return size, ids, err
}

// ComputedTraits returns a profile's computed traits as of now, with
// provenance "computed".
func (e *Engine) ComputedTraits(ctx context.Context, canonicalID string) ([]kith.Trait, error) {
	got, err := e.store.LoadStates(ctx, []string{canonicalID})
	if err != nil {
		return nil, err
	}
	st := &State{}
	if b, ok := got[canonicalID]; ok {
		if st, err = DecodeState(b); err != nil {
			return nil, err
		}
	}
	prog := e.Program()
	now := e.now()
	vals := prog.ComputedValues(st, now)
	var out []kith.Trait
	for _, c := range prog.Computed {
		v, ok := vals[c.Key]
		if !ok {
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		out = append(out, kith.Trait{Key: c.Key, Value: raw, Provenance: kith.ProvenanceComputed, ProfileID: canonicalID, EventTime: now.UTC().Truncate(time.Second)})
	}
	return out, nil
}

// ProfileMemberships lists the audiences a profile is a member of, by
// audience key, as committed.
func (e *Engine) ProfileMemberships(ctx context.Context, canonicalID string) ([]kith.Member, error) {
	got, err := e.store.LoadMemberships(ctx, []string{canonicalID})
	if err != nil {
		return nil, err
	}
	if ms := got[canonicalID]; ms != nil {
		return ms, nil
	}
	return []kith.Member{}, nil
}
