package activation

import "time"

// limiter spaces a destination's requests so that it receives at most
// rate messages per second on average, with a burst of up to a second's
// worth after a pause (GCRA: next is when every message booked so far
// would have gone at the rate). A limiter is used by its worker only.
type limiter struct {
	rate float64
	next time.Time
}

// burst is how far bookings may run ahead of the clock: a second's worth
// of messages goes at once after a pause.
const burst = time.Second

// reserve books n messages at now and returns how long to wait before
// sending them (0: at once). Without a rate it never waits.
func (l *limiter) reserve(now time.Time, n int) time.Duration {
	if l == nil || l.rate <= 0 {
		return 0
	}
	if l.next.Before(now) {
		l.next = now
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	return max(l.next.Sub(now)-burst, 0)
}
