package activation

import (
	"context"
	"sync"

	"github.com/kithcdp/kith"
)

// ownerCacheSize bounds the log positions whose profile the engine
// remembers: a few steps of every destination at full speed.
const ownerCacheSize = 1 << 17

// owners remembers, by log position, the profile each recent event was
// attributed to, so that destinations reading the same stretch of the log
// look each event's identifiers up once between them instead of once
// each (with ten destinations that was half the server's CPU). An
// attribution is the graph as it was a moment ago, as a worker reading
// a little earlier would have seen it; erasure clears it (Forget), so
// that no message is attributed to an erased profile from memory.
type owners struct {
	mu sync.Mutex
	by map[int64]string
	// ring holds the positions in the order they were added, for
	// eviction.
	ring []int64
	next int
}

func newOwners() *owners {
	return &owners{by: make(map[int64]string), ring: make([]int64, 0, ownerCacheSize)}
}

// attribute returns the profile of each message (kith.Message.Seq),
// from memory where it can and through attr for the rest.
func (o *owners) attribute(ctx context.Context, attr func(context.Context, []kith.Message) ([]string, error), msgs []kith.Message) ([]string, error) {
	out := make([]string, len(msgs))
	var miss []kith.Message
	var at []int
	o.mu.Lock()
	for i, m := range msgs {
		if p, ok := o.by[m.Seq]; ok {
			out[i] = p
			continue
		}
		miss = append(miss, m)
		at = append(at, i)
	}
	o.mu.Unlock()
	if len(miss) == 0 {
		return out, nil
	}
	got, err := attr(ctx, miss)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, i := range at {
		out[i] = got[k]
		o.put(miss[k].Seq, got[k])
	}
	return out, nil
}

// put remembers one attribution, forgetting the oldest when full; o.mu is
// held.
func (o *owners) put(seq int64, profile string) {
	if _, ok := o.by[seq]; ok {
		o.by[seq] = profile
		return
	}
	if len(o.ring) < ownerCacheSize {
		o.ring = append(o.ring, seq)
	} else {
		delete(o.by, o.ring[o.next])
		o.ring[o.next] = seq
		o.next = (o.next + 1) % ownerCacheSize
	}
	o.by[seq] = profile
}

// clear forgets every attribution.
func (o *owners) clear() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.by = make(map[int64]string)
	o.ring, o.next = o.ring[:0], 0
}

// logPages remembers the latest pages of the log the workers read, by the
// position they were read after, so that destinations reading the same
// stretch read and decode it once between them. Pages of applied events
// do not change but for erasure, which clears them (Forget).
type logPages struct {
	mu    sync.Mutex
	limit int
	by    map[int64][]kith.Message
	order []int64
}

// logPageCount bounds the pages remembered.
const logPageCount = 64

func newLogPages() *logPages { return &logPages{by: map[int64][]kith.Message{}} }

// read returns up to limit events after after, from memory when a full
// page was read there already. A page shorter than limit is not kept:
// events may still be appended to it.
func (l *logPages) read(ctx context.Context, rd func(context.Context, int64, int) ([]kith.Message, error), after int64, limit int) ([]kith.Message, error) {
	l.mu.Lock()
	if l.limit == limit {
		if page, ok := l.by[after]; ok {
			l.mu.Unlock()
			return page, nil
		}
	}
	l.mu.Unlock()
	page, err := rd(ctx, after, limit)
	if err != nil || len(page) < limit {
		return page, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit != limit {
		l.limit, l.by, l.order = limit, map[int64][]kith.Message{}, nil
	}
	if _, ok := l.by[after]; !ok {
		if len(l.order) == logPageCount {
			delete(l.by, l.order[0])
			l.order = l.order[1:]
		}
		l.order = append(l.order, after)
	}
	l.by[after] = page
	return page, nil
}

// clear forgets every page.
func (l *logPages) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.by, l.order = map[int64][]kith.Message{}, nil
}
