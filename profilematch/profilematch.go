// Package profilematch finds profiles that are the same person although no
// identifier links them — a POS loyalty record and a CRM contact with a
// typo in the name — with probabilistic matching (package match), and
// turns its findings into identity decisions: pairs above the auto-merge
// threshold become probabilistic links (explainable, reversible merges
// whose evidence is the match weight breakdown), pairs between the review
// and auto-merge thresholds go to the review queue for a person.
package profilematch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/match"
	"github.com/kithcdp/kith/pipeline"
)

// Field says where a match field comes from: the first of Traits a profile
// has (dotted for nested values, "address.city"), or, when Split is set,
// the first or last word of the trait named Split ("name").
type Field struct {
	Name   string   `json:"name"`
	Traits []string `json:"traits"`
	// SplitFirst/SplitLast take the first or last word of these traits
	// when none of Traits is present.
	SplitFirst []string `json:"splitFirst,omitempty"`
	SplitLast  []string `json:"splitLast,omitempty"`
	// Date normalises a date to YYYYMMDD.
	Date bool `json:"date,omitempty"`
}

// Config is a deployment's matching: the fields, the model settings, and
// the thresholds.
type Config struct {
	Fields   []Field
	Settings match.Settings
}

// DefaultConfig compares names, date of birth, e-mail, phone and address
// traits as CRMs, shops and POS systems usually name them, blocking on
// name, birthday, e-mail, phone and postcode with surname.
func DefaultConfig() Config {
	return Config{
		Fields: []Field{
			{Name: "first_name", Traits: []string{"first_name", "firstName", "given_name"}, SplitFirst: []string{"name"}},
			{Name: "last_name", Traits: []string{"last_name", "lastName", "surname"}, SplitLast: []string{"name"}},
			{Name: "birthday", Traits: []string{"birthday", "date_of_birth", "birthdate"}, Date: true},
			{Name: "email", Traits: []string{"email"}},
			{Name: "phone", Traits: []string{"phone"}},
			{Name: "street", Traits: []string{"address.street", "street"}},
			{Name: "city", Traits: []string{"address.city", "city"}},
			{Name: "postal_code", Traits: []string{"address.postal_code", "address.postalCode", "postal_code", "zip"}},
		},
		Settings: match.Settings{
			Mode: match.Dedupe,
			Comparisons: []match.Comparison{
				match.NameComparison("first_name").WithTF(),
				match.NameComparison("last_name").WithTF(),
				match.DateComparison("birthday"),
				match.ExactMatch("email"),
				match.ExactMatch("phone"),
				match.JaroWinklerAtThresholds("street", 0.9, 0.7).WithTF(),
				match.JaroWinklerAtThresholds("city", 0.9).WithTF(),
				match.LevenshteinAtThresholds("postal_code", 1).WithTF(),
			},
			Blocking: []match.BlockingRule{
				match.On("first_name", "last_name"),
				match.On("first_name", "last_name").Unordered(),
				match.On("birthday"),
				match.On("email"),
				match.On("phone"),
				match.On("postal_code", "last_name"),
			},
			Seed: 1,
		},
	}
}

// Store is what a matching run reads and writes.
type Store interface {
	ScanTraits(ctx context.Context, keys []string, fn func(canonicalID string, traits map[string]json.RawMessage) error) error
	ReviewItems(ctx context.Context, status string, limit int) ([]kith.ReviewItem, error)
	AddReviewItems(ctx context.Context, items []kith.ReviewItem) (int, error)
	SaveInsightRun(ctx context.Context, r kith.InsightRun) error
	Canonical(ctx context.Context, profileID string) (string, error)
}

// Linker joins two profiles (pipeline.Indexer).
type Linker interface {
	Link(ctx context.Context, l kith.Link) (kith.Merge, error)
}

// Report is what a run records.
type Report struct {
	Profiles    int                  `json:"profiles"`
	Blocking    match.BlockingStats  `json:"blocking"`
	Training    match.TrainingReport `json:"training"`
	AboveReview int                  `json:"aboveReview"`
	Linked      int                  `json:"linked"`
	AlreadyOne  int                  `json:"alreadyOne"`
	Refused     int                  `json:"refused"`
	Rejected    int                  `json:"previouslyRejected"`
	Queued      int                  `json:"queued"`
	Seconds     map[string]float64   `json:"seconds"`
	Note        string               `json:"note,omitempty"`
}

// Job runs probabilistic matching over the store's profiles, one run at a
// time.
type Job struct {
	Store  Store
	Linker Linker
	Config Config
	Logger *slog.Logger
	Now    func() time.Time

	mu sync.Mutex
	// The last batch run's index and model, for incremental matching of
	// profiles that appear after it.
	ix     *match.Index
	model  *match.Model
	ids    []string // index position -> profile id
	inIdx  map[string]bool
	review float64
}

// TriggerMatch marks matching runs among the recorded runs.
const TriggerMatch = "match"

func (j *Job) now() time.Time {
	if j.Now != nil {
		return j.Now().UTC()
	}
	return time.Now().UTC()
}

// Run matches every profile against every other, links the sure pairs and
// queues the uncertain ones, and records the run.
func (j *Job) Run(ctx context.Context) (kith.InsightRun, error) {
	if !j.mu.TryLock() {
		return kith.InsightRun{}, kith.Errorf(kith.ECONFLICT, "a matching run is in progress")
	}
	defer j.mu.Unlock()
	run := kith.InsightRun{ID: "match_" + j.now().Format("20060102T150405.000"), Status: kith.RunRunning, Trigger: TriggerMatch, StartedAt: j.now()}
	if err := j.Store.SaveInsightRun(ctx, run); err != nil {
		return run, err
	}
	rep, err := j.run(ctx, run.ID)
	run.FinishedAt = j.now()
	run.Status = kith.RunFinished
	if err != nil {
		run.Status, run.Error = kith.RunFailed, err.Error()
	}
	run.Report, _ = json.Marshal(rep)
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if serr := j.Store.SaveInsightRun(saveCtx, run); serr != nil && err == nil {
		err = serr
	}
	return run, err
}

func (j *Job) run(ctx context.Context, runID string) (*Report, error) {
	rep := &Report{Seconds: map[string]float64{}}
	cfg := j.Config
	names := make([]string, len(cfg.Fields))
	var keys []string
	for i, f := range cfg.Fields {
		names[i] = f.Name
		for _, t := range append(append(append([]string{}, f.Traits...), f.SplitFirst...), f.SplitLast...) {
			keys = append(keys, strings.SplitN(t, ".", 2)[0])
		}
	}
	schema := match.NewSchema(names...)
	ix, err := match.NewIndex(schema, cfg.Settings)
	if err != nil {
		return rep, fmt.Errorf("match profiles: %w", err)
	}
	t := time.Now()
	var ids []string
	err = j.Store.ScanTraits(ctx, keys, func(p string, traits map[string]json.RawMessage) error {
		rec := match.Record{ID: p, Fields: make([]string, len(cfg.Fields))}
		any := false
		for i, f := range cfg.Fields {
			rec.Fields[i] = f.value(traits)
			any = any || rec.Fields[i] != ""
		}
		if !any {
			return nil
		}
		if _, err := ix.Add(0, rec); err != nil {
			return err
		}
		ids = append(ids, p)
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("match profiles: read profiles: %w", err)
	}
	rep.Profiles = len(ids)
	rep.Seconds["read"] = time.Since(t).Seconds()
	t = time.Now()
	res, err := ix.Run()
	if err != nil {
		rep.Note = err.Error()
		return rep, nil // nothing to match is not a failure
	}
	j.ix, j.model, j.ids = ix, res.Model, ids
	j.inIdx = make(map[string]bool, len(ids))
	for _, id := range ids {
		j.inIdx[id] = true
	}
	j.review = cfg.Settings.Review
	if j.review == 0 {
		j.review = match.DefaultReview
	}
	rep.Blocking, rep.Training = res.Blocking, res.Training
	rep.AboveReview = len(res.Pairs)
	rep.Seconds["match"] = time.Since(t).Seconds()

	// A pair a person rejected stays apart, whatever a later run thinks.
	rejected := map[string]bool{}
	items, err := j.Store.ReviewItems(ctx, kith.ReviewRejected, 1_000_000)
	if err != nil {
		return rep, err
	}
	for _, it := range items {
		rejected[kith.PairKey(it.A, it.B)] = true
	}
	t = time.Now()
	var queue []kith.ReviewItem
	for _, p := range res.Pairs {
		a, b := ids[p.A], ids[p.B]
		if rejected[kith.PairKey(a, b)] {
			rep.Rejected++
			continue
		}
		ex, err := res.Model.Explain(ix, int(p.A), int(p.B))
		if err != nil {
			return rep, fmt.Errorf("match profiles: explain %s/%s: %w", a, b, err)
		}
		if err := j.decide(ctx, rep, &queue, runID, a, b, ex); err != nil {
			return rep, err
		}
	}
	if len(queue) > 0 {
		if rep.Queued, err = j.addReviewItems(ctx, queue); err != nil {
			return rep, err
		}
	}
	rep.Seconds["decide"] = time.Since(t).Seconds()
	if j.Logger != nil {
		j.Logger.Info("matching run", "profiles", rep.Profiles, "linked", rep.Linked, "queued", rep.Queued, "refused", rep.Refused)
	}
	return rep, nil
}

// decide links a sure pair or queues an uncertain one.
func (j *Job) decide(ctx context.Context, rep *Report, queue *[]kith.ReviewItem, runID, a, b string, ex match.Explanation) error {
	evidence, err := json.Marshal(ex)
	if err != nil {
		return err
	}
	switch ex.Decision {
	case match.Merge:
		_, err := j.Linker.Link(ctx, kith.Link{A: a, B: b, Kind: kith.LinkProbabilistic, Weight: ex.Weight, Evidence: evidence,
			By: runID, Reason: fmt.Sprintf("match probability %.4f", ex.Probability), At: j.now()})
		switch {
		case err == nil:
			rep.Linked++
		case errors.Is(err, pipeline.ErrAlreadyOne):
			rep.AlreadyOne++
		case kith.ErrorCode(err) == kith.ECONFLICT, kith.ErrorCode(err) == kith.ENOTFOUND:
			rep.Refused++ // the rules keep them apart, or one is gone
		case errors.Is(err, context.Canceled):
			return err
		default:
			return fmt.Errorf("match profiles: link %s/%s: %w", a, b, err)
		}
	case match.Review:
		*queue = append(*queue, kith.ReviewItem{ID: fmt.Sprintf("rv_%s_%d", runID, len(*queue)), A: a, B: b,
			Probability: ex.Probability, Weight: ex.Weight, Evidence: evidence, RunID: runID, CreatedAt: j.now()})
	}
	return nil
}

// Incremental matches the profiles that appeared since the last batch run
// against everything indexed, with that run's model, and adds them to the
// index: a new POS contact is linked to its CRM record within one pass
// rather than at the next batch run. It does nothing before a first batch
// run (there is no model yet).
func (j *Job) Incremental(ctx context.Context) (*Report, error) {
	if !j.mu.TryLock() {
		return nil, kith.Errorf(kith.ECONFLICT, "a matching run is in progress")
	}
	defer j.mu.Unlock()
	rep := &Report{Seconds: map[string]float64{}}
	if j.model == nil {
		rep.Note = "no batch run yet"
		return rep, nil
	}
	runID := "incremental_" + j.now().Format("20060102T150405.000")
	cfg := j.Config
	var keys []string
	for _, f := range cfg.Fields {
		for _, t := range append(append(append([]string{}, f.Traits...), f.SplitFirst...), f.SplitLast...) {
			keys = append(keys, strings.SplitN(t, ".", 2)[0])
		}
	}
	type fresh struct {
		id  string
		rec match.Record
	}
	var news []fresh
	err := j.Store.ScanTraits(ctx, keys, func(p string, traits map[string]json.RawMessage) error {
		if j.inIdx[p] {
			return nil
		}
		rec := match.Record{ID: p, Fields: make([]string, len(cfg.Fields))}
		any := false
		for i, f := range cfg.Fields {
			rec.Fields[i] = f.value(traits)
			any = any || rec.Fields[i] != ""
		}
		if any {
			news = append(news, fresh{p, rec})
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("match profiles: read profiles: %w", err)
	}
	var queue []kith.ReviewItem
	for _, n := range news {
		matches, err := j.model.ScoreRecord(j.ix, n.rec, j.review)
		if err != nil {
			return rep, fmt.Errorf("match profiles: score %s: %w", n.id, err)
		}
		for _, m := range matches {
			if err := j.decide(ctx, rep, &queue, runID, j.ids[m.Index], n.id, m.Explanation); err != nil {
				return rep, err
			}
		}
		if _, err := j.ix.Add(0, n.rec); err != nil {
			return rep, err
		}
		j.ids = append(j.ids, n.id)
		j.inIdx[n.id] = true
		rep.Profiles++
	}
	if len(queue) > 0 {
		if rep.Queued, err = j.addReviewItems(ctx, queue); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// Schedule runs a batch every interval (0: only on request) and, once a
// batch has built a model, matches new profiles every incremental, until
// ctx ends. A run still in progress makes the next one skip.
func (j *Job) Schedule(ctx context.Context, every, incremental time.Duration) {
	var batch <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		batch = t.C
	}
	inc := time.NewTicker(incremental)
	defer inc.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return
		case <-batch:
			_, err = j.Run(ctx)
		case <-inc.C:
			_, err = j.Incremental(ctx)
		}
		if err != nil && kith.ErrorCode(err) != kith.ECONFLICT && j.Logger != nil {
			j.Logger.Error("scheduled matching failed", "err", err)
		}
	}
}

// value reads a field from a profile's traits.
func (f Field) value(traits map[string]json.RawMessage) string {
	for _, t := range f.Traits {
		if v := traitString(traits, t); v != "" {
			if f.Date {
				return normaliseDate(v)
			}
			return v
		}
	}
	for _, t := range f.SplitFirst {
		if w := strings.Fields(traitString(traits, t)); len(w) > 1 {
			return w[0]
		}
	}
	for _, t := range f.SplitLast {
		if w := strings.Fields(traitString(traits, t)); len(w) > 1 {
			return w[len(w)-1]
		}
	}
	return ""
}

// traitString reads a string or number trait, following dots into objects.
func traitString(traits map[string]json.RawMessage, path string) string {
	parts := strings.Split(path, ".")
	raw, ok := traits[parts[0]]
	for _, p := range parts[1:] {
		if !ok {
			return ""
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return ""
		}
		raw, ok = obj[p]
	}
	if !ok {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// normaliseDate turns the common date spellings into YYYYMMDD.
func normaliseDate(s string) string {
	for _, l := range []string{"2006-01-02", "20060102", "2006/01/02", "02.01.2006", "2006-01-02T15:04:05Z07:00"} {
		if t, err := time.Parse(l, s); err == nil {
			return t.Format("20060102")
		}
	}
	return s
}

// addReviewItems queues the pairs whose profiles still exist: a person
// erased while the run compared traits must not come back as review
// evidence (which holds the compared values).
func (j *Job) addReviewItems(ctx context.Context, items []kith.ReviewItem) (int, error) {
	live := items[:0:0]
	for _, it := range items {
		ok := true
		for _, id := range []string{it.A, it.B} {
			if _, err := j.Store.Canonical(ctx, id); kith.ErrorCode(err) == kith.ENOTFOUND {
				ok = false
			} else if err != nil {
				return 0, err
			}
		}
		if ok {
			live = append(live, it)
		}
	}
	if len(live) == 0 {
		return 0, nil
	}
	return j.Store.AddReviewItems(ctx, live)
}
