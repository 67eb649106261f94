// Package privacy owns what Kith does for the people whose data it holds:
// erasure of a whole person on request (tracked from accepted to
// finished, with counts), suppression of an erased person's identifiers at
// ingest, and the data-subject export of everything held about someone.
// Erasure reaches every place a person's data lives: the event log, the
// identity graph and profiles, traits, orders, predicted traits, audience
// memberships and their history, third-party audiences, identity decisions
// and review items. What it records about the request itself is the
// identifier's type and keyed hash, never the identifier.
package privacy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
	"github.com/kithcdp/kith/pipeline"
)

// Indexer is the part of the indexer erasure needs.
type Indexer interface {
	Erase(ctx context.Context, canonical string) (pipeline.Erased, error)
	Cursor() int64
}

// Engine is the part of the audience engine erasure needs.
type Engine interface {
	WaitFor(ctx context.Context, seq int64) error
	Erase(ctx context.Context, ids []string) (int64, error)
}

// Destinations is the part of the activation engine erasure needs
// (activation.Engine).
type Destinations interface {
	// Forget drops what destinations hold about the erased profiles and,
	// for an erasure request, sends each that received them a deletion
	// message about the person; it returns those. No destination's
	// worker runs until release is called (always, also after an error).
	Forget(ctx context.Context, erasure, canonical string, profiles []string, person []kith.Identity) (eds []kith.ErasureDestination, release func(), err error)
	// DeletionStatus reads how those deletions are doing.
	DeletionStatus(ctx context.Context, eds []kith.ErasureDestination) ([]kith.ErasureDestination, error)
}

// Service runs erasures in the background, one at a time, and keeps the
// suppression list the collector consults.
type Service struct {
	Store   kith.Store
	Indexer Indexer
	Engine  Engine // nil when there is no audience engine
	// Destinations, if set, forget the person and are told of each
	// erasure (a deletion message to each destination that received the
	// person's data).
	Destinations Destinations
	Secret       []byte
	// Rules returns the identity rules in force (identity.Current's Load,
	// shared with the indexer): they normalise identifier references and
	// extract identifiers at ingest, so suppression matches what the
	// indexer would link.
	Rules  func() *identity.Rules
	Now    func() time.Time
	Logger *slog.Logger

	keyer      identity.Keyer
	suppressed atomic.Pointer[map[kith.IdentKey]struct{}]
	wake       chan struct{}
	wg         sync.WaitGroup
}

// Start loads the suppression list and resumes erasures that were
// accepted or running when the server stopped; then it processes new ones
// until ctx ends.
func (s *Service) Start(ctx context.Context) error {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	s.keyer = identity.NewKeyer(s.Secret)
	s.wake = make(chan struct{}, 1)
	keys, err := s.Store.Suppressions(ctx)
	if err != nil {
		return fmt.Errorf("privacy: load suppressions: %w", err)
	}
	m := make(map[kith.IdentKey]struct{}, len(keys))
	for _, k := range keys {
		m[k] = struct{}{}
	}
	s.suppressed.Store(&m)
	s.wg.Add(1)
	go s.loop(ctx)
	s.signal()
	return nil
}

// Wait waits for the worker to stop after its context ended.
func (s *Service) Wait() { s.wg.Wait() }

func (s *Service) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Gate reports whether a message carries a suppressed identifier: the
// collector drops such messages and counts them as suppressed. It costs
// nothing while nobody is suppressed.
func (s *Service) Gate(m kith.Message) bool {
	sup := s.suppressed.Load()
	if sup == nil || len(*sup) == 0 {
		return false
	}
	rules := s.Rules() // one set of rules for the whole message
	ex, err := rules.Extract(m)
	if err != nil {
		return false
	}
	for _, id := range ex.Identifiers {
		if _, ok := (*sup)[s.keyer.Key(id)]; ok {
			return true
		}
	}
	if ex.PreviousID != "" {
		// An alias names the earlier id as a user id or an anonymous id.
		for _, typ := range []string{kith.IdentUserID, kith.IdentAnonymousID} {
			if _, ok := (*sup)[s.keyer.Key(rules.Normalise(typ, ex.PreviousID))]; ok {
				return true
			}
		}
	}
	return false
}

func (s *Service) addSuppressed(ctx context.Context, keys []kith.IdentKey) error {
	if err := s.Store.AddSuppressions(ctx, keys, s.Now()); err != nil {
		return err
	}
	old := s.suppressed.Load()
	m := make(map[kith.IdentKey]struct{}, len(*old)+len(keys))
	for k := range *old {
		m[k] = struct{}{}
	}
	for _, k := range keys {
		m[k] = struct{}{}
	}
	s.suppressed.Store(&m)
	return nil
}

// Request records an erasure of the person an identifier ("email:ada@…",
// "user_id:u-42", …) belongs to and starts it in the background.
func (s *Service) Request(ctx context.Context, ref string, suppress bool, by string) (kith.Erasure, error) {
	id, ok := s.Rules().ParseRef(ref)
	if !ok {
		return kith.Erasure{}, kith.Errorf(kith.EINVALID, "identifier must be type:value, e.g. email:ada@example.com")
	}
	e := kith.Erasure{ID: kith.NewID("era_"), Status: kith.ErasureAccepted, IdentType: id.Type,
		IdentKey: s.keyer.Key(id), Suppress: suppress, RequestedBy: by, CreatedAt: s.Now().UTC().Truncate(time.Microsecond)}
	if err := s.Store.SaveErasure(ctx, e); err != nil {
		return kith.Erasure{}, err
	}
	s.signal()
	return e, nil
}

func (s *Service) loop(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		for ctx.Err() == nil {
			e, ok, err := s.next(ctx)
			if err != nil {
				s.Logger.Error("privacy: reading erasure requests", "err", err)
				break
			}
			if !ok {
				break
			}
			s.run(ctx, e)
		}
	}
}

// next returns the oldest erasure not finished.
func (s *Service) next(ctx context.Context) (kith.Erasure, bool, error) {
	list, err := s.Store.Erasures(ctx, 1000)
	if err != nil {
		return kith.Erasure{}, false, err
	}
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Status == kith.ErasureAccepted || list[i].Status == kith.ErasureRunning {
			return list[i], true, nil
		}
	}
	return kith.Erasure{}, false, nil
}

func (s *Service) run(ctx context.Context, e kith.Erasure) {
	e.Status, e.StartedAt = kith.ErasureRunning, s.Now().UTC()
	if err := s.Store.SaveErasure(ctx, e); err != nil {
		s.Logger.Error("privacy: erasure", "id", e.ID, "err", err)
		return
	}
	counts, err := s.erase(ctx, &e)
	e.Counts, e.FinishedAt = counts, s.Now().UTC()
	e.Status = kith.ErasureFinished
	if !e.Suppress {
		// Without suppression nothing needs the identifier's hash any more.
		e.IdentKey = kith.IdentKey{}
	}
	if err != nil {
		if ctx.Err() != nil {
			return // resumed at the next start
		}
		e.Status, e.Error = kith.ErasureFailed, err.Error()
		s.Logger.Error("privacy: erasure failed", "id", e.ID, "err", err)
	} else {
		s.Logger.Info("privacy: erasure finished", "id", e.ID, "events", counts["events"], "profiles", counts["profiles"])
	}
	if err := s.Store.SaveErasure(context.WithoutCancel(ctx), e); err != nil {
		s.Logger.Error("privacy: erasure", "id", e.ID, "err", err)
	}
}

// erase does one erasure: suppress first (so the person's new events stop
// at the door), let the indexer apply everything already accepted (so
// every event of the person is attributed), then erase the profile, its
// audience data, and everything else that names it.
func (s *Service) erase(ctx context.Context, e *kith.Erasure) (map[string]int64, error) {
	counts := map[string]int64{}
	canonical, keys, err := s.resolve(ctx, e.IdentKey)
	if err != nil {
		return counts, err
	}
	suppressed := map[kith.IdentKey]bool{}
	suppress := func(keys []kith.IdentKey) error {
		var add []kith.IdentKey
		for _, k := range keys {
			if !suppressed[k] {
				suppressed[k] = true
				add = append(add, k)
			}
		}
		if len(add) == 0 {
			return nil
		}
		counts["suppressed_identifiers"] += int64(len(add))
		return s.addSuppressed(ctx, add)
	}
	if e.Suppress {
		// First, so the person's new events stop at the door.
		if err := suppress(append(keys, e.IdentKey)); err != nil {
			return counts, err
		}
	}
	// An event that passed the door just before may still be committing,
	// and the indexer may attach it after the erasure: erase again until
	// no profile has the identifier (a few rounds at most).
	for round := 0; round < 5; round++ {
		if err := s.caughtUp(ctx); err != nil {
			return counts, err
		}
		// What the indexer applied meanwhile may have merged the person
		// into another profile.
		if canonical, _, err = s.resolve(ctx, e.IdentKey); err != nil || canonical == "" {
			return counts, err
		}
		scope, err := s.eraseProfile(ctx, e, canonical, counts)
		if kith.ErrorCode(err) == kith.ECONFLICT {
			continue // merged meanwhile: resolve again
		}
		if err != nil {
			return counts, err
		}
		if e.Suppress {
			// Every identifier the erasure removed, also those that
			// arrived after the request.
			if err := suppress(scope.Keys); err != nil {
				return counts, err
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return counts, fmt.Errorf("privacy: the person's profile kept coming back; erase again")
}

// caughtUp waits until the indexer has applied every event accepted so
// far, so every event of a person is attributed to their profile.
func (s *Service) caughtUp(ctx context.Context) error {
	head, err := s.Store.LogHead(ctx)
	if err != nil {
		return err
	}
	for s.Indexer.Cursor() < head {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// EraseProfile erases a unified profile and everything derived from it
// (as an erasure request does, without one: retention's inactivity
// expiry), adding what it removed to counts.
func (s *Service) EraseProfile(ctx context.Context, canonical string, counts map[string]int64) error {
	if err := s.caughtUp(ctx); err != nil {
		return err
	}
	_, err := s.eraseProfile(ctx, nil, canonical, counts)
	return err
}

// eraseProfile erases one unified profile for the erasure request e (nil
// for a retention expiry): the indexer's rows, the audience engine's,
// and what destinations hold. For a request, the destinations forget the
// person and are sent their deletions first, while the person can still
// be resolved, so that an erasure that fails or stops after this runs
// again in full; their workers stay stopped until the events are erased,
// so that none sends them again. e records those destinations (saved at
// once).
func (s *Service) eraseProfile(ctx context.Context, e *kith.Erasure, canonical string, counts map[string]int64) (kith.Cluster, error) {
	forgot := map[string]bool{}
	var person []kith.Identity
	if e != nil && s.Destinations != nil {
		// Read before they are erased: a deletion names the person by
		// the identifiers the destinations were sent.
		var err error
		if person, err = s.Store.Identities(ctx, canonical); err != nil {
			return kith.Cluster{}, fmt.Errorf("privacy: reading the identifiers of %s: %w", canonical, err)
		}
		cl, err := s.Store.Cluster(ctx, canonical)
		if err != nil {
			return kith.Cluster{}, fmt.Errorf("privacy: reading the profile %s: %w", canonical, err)
		}
		eds, release, err := s.Destinations.Forget(ctx, e.ID, canonical, cl.Members, person)
		defer release()
		if err := s.recordDeletions(ctx, e, eds, counts, err); err != nil {
			return kith.Cluster{}, err
		}
		for _, m := range cl.Members {
			forgot[m] = true
		}
	}
	res, err := s.Indexer.Erase(ctx, canonical)
	for k, v := range res.Counts {
		counts[k] += v
	}
	if err != nil {
		return res.Scope, err
	}
	if s.Engine != nil {
		if err := s.Engine.WaitFor(ctx, s.Indexer.Cursor()); err != nil {
			return res.Scope, err
		}
		n, err := s.Engine.Erase(ctx, res.Scope.Members)
		counts["audience_history"] += n
		if err != nil {
			return res.Scope, err
		}
	}
	if s.Destinations != nil {
		// The profiles not forgotten yet: every member for a retention
		// expiry, those merged in meanwhile for a request.
		var rest []string
		for _, m := range res.Scope.Members {
			if !forgot[m] {
				rest = append(rest, m)
			}
		}
		erasure := ""
		if e != nil {
			erasure = e.ID
		}
		eds, release, err := s.Destinations.Forget(ctx, erasure, canonical, rest, person)
		release()
		if e != nil {
			err = s.recordDeletions(ctx, e, eds, counts, err)
		}
		if err != nil {
			return res.Scope, fmt.Errorf("privacy: destinations: %w", err)
		}
	}
	return res.Scope, nil
}

// recordDeletions adds the destinations sent a deletion to the erasure
// (one entry per destination) and saves it at once, so that an erasure
// resumed after a crash still lists them; err is Forget's, returned
// first.
func (s *Service) recordDeletions(ctx context.Context, e *kith.Erasure, eds []kith.ErasureDestination, counts map[string]int64, err error) error {
	for _, ed := range eds {
		i := slices.IndexFunc(e.Destinations, func(x kith.ErasureDestination) bool { return x.ID == ed.ID })
		if i < 0 {
			e.Destinations = append(e.Destinations, ed)
			counts["destination_deletions"]++
			continue
		}
		for _, id := range ed.Deliveries {
			if !slices.Contains(e.Destinations[i].Deliveries, id) {
				e.Destinations[i].Deliveries = append(e.Destinations[i].Deliveries, id)
			}
		}
	}
	if len(eds) > 0 {
		if serr := s.Store.SaveErasure(context.WithoutCancel(ctx), *e); serr != nil && err == nil {
			err = serr
		}
	}
	if err != nil {
		return fmt.Errorf("privacy: destinations: %w", err)
	}
	return nil
}

// Erasure returns an erasure request with how its deletions are doing
// at each destination.
func (s *Service) Erasure(ctx context.Context, id string) (kith.Erasure, error) {
	e, err := s.Store.Erasure(ctx, id)
	if err != nil {
		return e, err
	}
	list := []kith.Erasure{e}
	err = s.withDeletions(ctx, list)
	return list[0], err
}

// Erasures lists the latest erasure requests, newest first, with how
// their deletions are doing.
func (s *Service) Erasures(ctx context.Context, limit int) ([]kith.Erasure, error) {
	list, err := s.Store.Erasures(ctx, limit)
	if err != nil {
		return nil, err
	}
	return list, s.withDeletions(ctx, list)
}

// withDeletions reads how the deletions of the erasures in list are
// doing, all in one call to the destinations.
func (s *Service) withDeletions(ctx context.Context, list []kith.Erasure) error {
	if s.Destinations == nil {
		return nil
	}
	var all []kith.ErasureDestination
	for _, e := range list {
		all = append(all, e.Destinations...)
	}
	if len(all) == 0 {
		return nil
	}
	eds, err := s.Destinations.DeletionStatus(ctx, all)
	if err != nil {
		return fmt.Errorf("privacy: the erasures' deletions: %w", err)
	}
	for i := range list {
		n := len(list[i].Destinations)
		list[i].Destinations, eds = eds[:n:n], eds[n:]
	}
	return nil
}

// resolve finds the unified profile an identifier key belongs to and the
// keys of all its identifiers ("" when no profile has it).
func (s *Service) resolve(ctx context.Context, key kith.IdentKey) (string, []kith.IdentKey, error) {
	owners, err := s.Store.LookupIdentifiers(ctx, []kith.IdentKey{key})
	if err != nil {
		return "", nil, err
	}
	o, ok := owners[key]
	if !ok {
		return "", nil, nil
	}
	cl, err := s.Store.Cluster(ctx, o.Canonical)
	if err != nil {
		return "", nil, err
	}
	return o.Canonical, cl.Keys, nil
}
