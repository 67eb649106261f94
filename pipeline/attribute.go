package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/identity"
)

// Attribution reads whom log events are from: a message's identifiers
// under the identity rules in force, strongest first, with their keys. The
// indexer links events to profiles by what it reads; the audience engine,
// when it reads the log itself (behind the indexer, after a restart, in a
// backfill), finds the profiles events were applied to by the same
// reading. Both read the one source of rules and the same code, so they
// cannot disagree about whom an event is from because one kept older rules
// or skipped what the other warned about. It is safe for concurrent use.
type Attribution struct {
	rules  func() *identity.Rules
	keyer  identity.Keyer
	log    *slog.Logger
	reader string
	// undecodable counts the messages whose identifiers could not be
	// read; mark is the highest seq counted, so a message read again (a
	// batch derived again after a failure, a backfill) is counted and
	// logged once.
	undecodable atomic.Int64
	mark        atomic.Int64
}

// NewAttribution returns the Attribution a reader (named in its warnings:
// "indexer", "audience engine") uses: rules returns the rules in force
// (identity.Current's Load; nil: identity.DefaultRules), keyer keys
// identifiers as the store does.
func NewAttribution(rules func() *identity.Rules, keyer identity.Keyer, log *slog.Logger, reader string) *Attribution {
	if rules == nil {
		def := identity.DefaultRules()
		rules = func() *identity.Rules { return def }
	}
	if log == nil {
		log = slog.Default()
	}
	return &Attribution{rules: rules, keyer: keyer, log: log, reader: reader}
}

// Rules returns the rules in force. A reader loads them once per unit of
// work and reads every message of it under what it loaded.
func (a *Attribution) Rules() *identity.Rules { return a.rules() }

// Read returns m's identifiers under rules, strongest first, and their
// keys (keys[i] is the key of ex.Identifiers[i]). ok is false when m does
// not decode: nothing can be attributed from it, and that is logged as a
// warning and counted (once per message), never skipped in silence.
func (a *Attribution) Read(rules *identity.Rules, m kith.Message) (ex identity.Extracted, keys []kith.IdentKey, ok bool) {
	ex, err := rules.Extract(m)
	if err != nil {
		// The log only holds messages collect produced; one that no longer
		// decodes is processed without identity rather than blocking
		// whoever reads it.
		a.undecodableAt(m.Seq, err)
		return identity.Extracted{}, nil, false
	}
	keys = make([]kith.IdentKey, len(ex.Identifiers))
	for i, id := range ex.Identifiers {
		keys[i] = a.keyer.Key(id)
	}
	return ex, keys, true
}

// undecodableAt counts and logs the message at seq unless it was already.
func (a *Attribution) undecodableAt(seq int64, err error) {
	for {
		mark := a.mark.Load()
		if seq > 0 && seq <= mark {
			return
		}
		if seq <= 0 || a.mark.CompareAndSwap(mark, seq) {
			break
		}
	}
	a.undecodable.Add(1)
	a.log.Warn(a.reader+": message does not decode; nothing is attributed from it", "seq", seq, "err", err)
}

// Undecodable counts the messages this reader could not read identifiers
// from (each logged as a warning when it was met).
func (a *Attribution) Undecodable() int64 { return a.undecodable.Load() }

// IdentifierLookup finds the profiles identifier keys are attached to (the
// store).
type IdentifierLookup interface {
	LookupIdentifiers(ctx context.Context, keys []kith.IdentKey) (map[kith.IdentKey]kith.IdentOwner, error)
}

// Owners attributes each message to the canonical profile that owns its
// strongest identifier with an owner, under the rules in force ("" for
// none): the profile the indexer applied it to, deciding under the same
// rules, as the graph resolves that profile now.
func (a *Attribution) Owners(ctx context.Context, store IdentifierLookup, msgs []kith.Message) ([]string, error) {
	rules := a.Rules()
	keys := make([][]kith.IdentKey, len(msgs))
	var all []kith.IdentKey
	for i, m := range msgs {
		if _, ks, ok := a.Read(rules, m); ok {
			keys[i] = ks
			all = append(all, ks...)
		}
	}
	found, err := store.LookupIdentifiers(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("pipeline: look up identifiers: %w", err)
	}
	out := make([]string, len(msgs))
	for i := range msgs {
		for _, k := range keys[i] {
			if o, ok := found[k]; ok {
				out[i] = o.Canonical
				break
			}
		}
	}
	return out, nil
}
