package activation

import (
	"testing"
	"time"
)

// booking is one request's messages booked at an instant, and the wait
// the limiter should answer.
type booking struct {
	at   time.Duration // since the test's start
	n    int
	wait time.Duration
}

// The limiter lets a second's worth of messages go at once after a
// pause, then spaces them at the rate; a batch books all its messages.
func TestLimiterSchedule(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	tests := []struct {
		name     string
		rate     float64
		bookings []booking
	}{
		{"no rate never waits", 0, []booking{{0, 1000, 0}, {0, 1000, 0}}},
		{"10/s: ten at once, then one per 100 ms", 10, []booking{{0, 10, 0}, {0, 1, 100 * ms}, {0, 1, 200 * ms}, {150 * ms, 1, 150 * ms}}},
		{"a pause refills the burst, not more", 10, []booking{{0, 10, 0}, {time.Hour, 10, 0}, {time.Hour, 5, 500 * ms}}},
		{"a batch larger than the burst waits for its share", 100, []booking{{0, 300, 2 * time.Second}, {2 * time.Second, 100, time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := limiter{rate: tt.rate}
			for i, b := range tt.bookings {
				if got := l.reserve(t0.Add(b.at), b.n); got != b.wait {
					t.Errorf("booking %d (%d at %v): wait %v, want %v", i, b.n, b.at, got, b.wait)
				}
			}
		})
	}
}
