// Package btyd fits the "buy 'til you die" models of customer purchasing —
// BG/NBD (Fader, Hardie & Lee 2005), Pareto/NBD (Schmittlein, Morrison &
// Colombo 1987) and the Gamma-Gamma spend model (Fader, Hardie & Lee 2005,
// "RFM and CLV") — and answers the per-customer questions a CDP asks of
// them: is this customer still alive, how many purchases will they make in
// the next N days, what is their average order worth, and what is their
// lifetime value.
//
// The package works on calibration summaries (frequency, recency, age and
// mean repeat spend) and knows nothing about where purchases come from; the
// insights package feeds it from the event store and from files.
package btyd

import (
	"fmt"
	"sort"
	"time"
)

// Customer is one customer's calibration summary, in the fit's time unit.
type Customer struct {
	// X is the number of repeat purchases (purchase-days after the first).
	X float64
	// Tx is the time of the last repeat purchase, measured from the first
	// purchase; 0 when X is 0.
	Tx float64
	// T is the customer's age: time from the first purchase to the end of
	// the calibration period.
	T float64
	// Spend is the mean value of the repeat purchases; 0 when X is 0.
	Spend float64
}

// Purchase is one purchase: the customer it belongs to, when, and what it
// was worth.
type Purchase struct {
	Customer string
	At       time.Time
	Amount   float64
}

// Day is a calendar day counted from 1970-01-01, the resolution at which
// purchases are merged.
type Day int32

// DayOf returns the calendar day of t in t's own location, so a purchase at
// 23:30 local time counts on the local day.
func DayOf(t time.Time) Day {
	y, m, d := t.Date()
	return Day(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// Time returns the start of the day in UTC.
func (d Day) Time() time.Time { return time.Unix(int64(d)*86400, 0).UTC() }

// DayAmount is one purchase-day of a customer: every purchase of that
// calendar day merged, their amounts summed.
type DayAmount struct {
	Day    Day
	Amount float64
}

// Period says how to summarise purchase histories: purchases on or before
// CalibrationEnd form the calibration summary, those after it up to and
// including HoldoutEnd (if set) are counted as holdout repeat purchases.
// Unit is the length of the models' time unit in days (7 for weeks).
type Period struct {
	CalibrationEnd Day
	HoldoutEnd     Day // 0: no holdout
	Unit           float64
}

// Validate reports whether p can summarise anything.
func (p Period) Validate() error {
	if !(p.Unit > 0) {
		return fmt.Errorf("btyd: time unit must be positive, got %v days", p.Unit)
	}
	if p.HoldoutEnd != 0 && p.HoldoutEnd <= p.CalibrationEnd {
		return fmt.Errorf("btyd: holdout end %s is not after calibration end %s",
			p.HoldoutEnd.Time().Format(time.DateOnly), p.CalibrationEnd.Time().Format(time.DateOnly))
	}
	return nil
}

// Summary is one customer's history as the models see it.
type Summary struct {
	ID string
	Customer
	// First is the first purchase day.
	First Day
	// Holdout is the number of repeat purchase-days after the calibration
	// end up to the holdout end.
	Holdout int
	// HoldoutSpend is the amount spent in the holdout period.
	HoldoutSpend float64
}

// MergeDays sorts a customer's purchases by day and merges purchases of the
// same day into one, summing amounts, as the literature does. It reuses
// days' storage.
func MergeDays(days []DayAmount) []DayAmount {
	if len(days) < 2 {
		return days
	}
	sort.Slice(days, func(i, j int) bool { return days[i].Day < days[j].Day })
	out := days[:1]
	for _, d := range days[1:] {
		if last := &out[len(out)-1]; last.Day == d.Day {
			last.Amount += d.Amount
			continue
		}
		out = append(out, d)
	}
	return out
}

// Summarise turns one customer's merged purchase-days (sorted, as MergeDays
// returns them) into a calibration summary. ok is false when the customer's
// first purchase is after the calibration end: they are not part of the
// calibration cohort.
func (p Period) Summarise(id string, days []DayAmount) (s Summary, ok bool) {
	if len(days) == 0 || days[0].Day > p.CalibrationEnd {
		return Summary{}, false
	}
	s.ID = id
	s.First = days[0].Day
	s.T = float64(p.CalibrationEnd-s.First) / p.Unit
	var spend float64
	for _, d := range days[1:] {
		switch {
		case d.Day <= p.CalibrationEnd:
			s.X++
			s.Tx = float64(d.Day-s.First) / p.Unit
			spend += d.Amount
		case p.HoldoutEnd != 0 && d.Day <= p.HoldoutEnd:
			s.Holdout++
			s.HoldoutSpend += d.Amount
		}
	}
	if s.X > 0 {
		s.Spend = spend / s.X
	}
	return s, true
}

// SummariseAll groups purchases by customer, merges same-day purchases and
// summarises every customer in the calibration cohort, ordered by customer
// id. It holds all purchases in memory; the insights engine streams
// per-customer histories through Period.Summarise instead.
func SummariseAll(purchases []Purchase, p Period) ([]Summary, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	by := map[string][]DayAmount{}
	for _, pu := range purchases {
		by[pu.Customer] = append(by[pu.Customer], DayAmount{DayOf(pu.At), pu.Amount})
	}
	ids := make([]string, 0, len(by))
	for id := range by {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]Summary, 0, len(ids))
	for _, id := range ids {
		if s, ok := p.Summarise(id, MergeDays(by[id])); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// Customers returns the calibration summaries alone, as the fitters take
// them.
func Customers(ss []Summary) []Customer {
	out := make([]Customer, len(ss))
	for i, s := range ss {
		out[i] = s.Customer
	}
	return out
}
