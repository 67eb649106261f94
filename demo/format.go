package demo

import (
	"math"
	"strconv"
)

// Durations in milliseconds, the unit of every time the generator keeps.
const (
	second int64 = 1000
	minute       = 60 * second
	hour         = 60 * minute
	day          = 24 * hour
	year         = 365*day + 6*hour
)

const hexDigits = "0123456789abcdef"

// civil converts days since 1970-01-01 into a proleptic Gregorian date
// (Howard Hinnant's days_from_civil inverse); days may be negative.
func civil(days int64) (y, m, d int) {
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	m = int(mp + 3)
	if mp >= 10 {
		m = int(mp - 9)
	}
	y = int(yoe + era*400)
	if m <= 2 {
		y++
	}
	return y, m, d
}

// floorDiv divides rounding towards minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// append2 appends v (0..99) as two digits.
func append2(dst []byte, v int) []byte {
	return append(dst, byte('0'+v/10), byte('0'+v%10))
}

// appendDate appends a date as 2006-01-02.
func appendDate(dst []byte, y, m, d int) []byte {
	dst = append2(dst, y/100)
	dst = append2(dst, y%100)
	dst = append(dst, '-')
	dst = append2(dst, m)
	dst = append(dst, '-')
	return append2(dst, d)
}

// appendRFC3339 appends a UTC time in milliseconds since the epoch as
// 2006-01-02T15:04:05.000Z.
func appendRFC3339(dst []byte, ms int64) []byte {
	days := floorDiv(ms, day)
	rem := ms - days*day
	y, m, d := civil(days)
	dst = appendDate(dst, y, m, d)
	dst = append(dst, 'T')
	dst = appendClock(dst, rem)
	r := int(rem % 1000)
	return append(dst, '.', byte('0'+r/100), byte('0'+r/10%10), byte('0'+r%10), 'Z')
}

// appendCSVTime appends a UTC time in milliseconds since the epoch as
// 2006-01-02 15:04:05.
func appendCSVTime(dst []byte, ms int64) []byte {
	days := floorDiv(ms, day)
	y, m, d := civil(days)
	dst = appendDate(dst, y, m, d)
	dst = append(dst, ' ')
	return appendClock(dst, ms-days*day)
}

// appendClock appends the time of day rem (milliseconds into the day) as
// 15:04:05.
func appendClock(dst []byte, rem int64) []byte {
	s := int(rem / 1000)
	dst = append2(dst, s/3600)
	dst = append(dst, ':')
	dst = append2(dst, s/60%60)
	dst = append(dst, ':')
	return append2(dst, s%60)
}

// appendCents appends an amount in cents with two decimals, as 24.95.
func appendCents(dst []byte, cents int) []byte {
	dst = strconv.AppendInt(dst, int64(cents/100), 10)
	return append(dst, '.', byte('0'+cents%100/10), byte('0'+cents%10))
}

// centsString renders an amount in cents with two decimals.
func centsString(cents int) string {
	var b [24]byte
	return string(appendCents(b[:0], cents))
}

// appendHex appends the low n hex digits of v.
func appendHex(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(v>>(4*uint(i)))&0xf])
	}
	return dst
}

// appendUUID appends a version-4 UUID built from hi and lo, in lower case
// or, for upper, in upper case (as Apple's identifiers are written).
func appendUUID(dst []byte, hi, lo uint64, upper bool) []byte {
	start := len(dst)
	hi = hi&^0xf000 | 0x4000     // version 4
	lo = lo&^(0xc<<60) | 0x8<<60 // RFC 4122 variant
	dst = appendHex(dst, hi>>32, 8)
	dst = append(dst, '-')
	dst = appendHex(dst, hi>>16, 4)
	dst = append(dst, '-')
	dst = appendHex(dst, hi, 4)
	dst = append(dst, '-')
	dst = appendHex(dst, lo>>48, 4)
	dst = append(dst, '-')
	dst = appendHex(dst, lo, 12)
	if upper {
		for i := start; i < len(dst); i++ {
			if c := dst[i]; 'a' <= c && c <= 'f' {
				dst[i] = c - 'a' + 'A'
			}
		}
	}
	return dst
}

// uuid returns a version-4 UUID string.
func uuid(hi, lo uint64, upper bool) string {
	var b [36]byte
	return string(appendUUID(b[:0], hi, lo, upper))
}

// appendKey appends ,"key": (or "key": when first).
func appendKey(dst []byte, key string, first bool) []byte {
	if !first {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	return append(dst, '"', ':')
}

// appendBool appends a JSON boolean.
func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, "true"...)
	}
	return append(dst, "false"...)
}

// mix is the SplitMix64 finaliser: a cheap, well-distributed hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// perm32 is a bijection of the 32-bit integers keyed by k: distinct inputs
// give distinct outputs, so ids derived from person numbers never collide.
func perm32(x, k uint32) uint32 {
	x ^= k
	x *= 0x9e3779b1
	x ^= x >> 16
	x *= 0x85ebca6b
	x ^= x >> 13
	x *= 0xc2b2ae35
	x ^= x >> 16
	return x
}

// permute maps i in [0, n) to a distinct value in [0, n), scrambled by
// key, so that numbers derived from consecutive people look unrelated. It
// is a bijection of the smallest power-of-two range holding n (odd
// multiplications, additions and xor-shifts, each invertible), walked until
// it lands below n.
func permute(i, n, key uint64) uint64 {
	bits := 1
	for uint64(1)<<bits < n {
		bits++
	}
	mask := uint64(1)<<bits - 1
	shift := bits/2 + 1
	x := i
	for {
		for r := range 3 {
			k := mix(key + uint64(r))
			x = (x + k) & mask
			x = (x * (k | 1)) & mask
			x ^= x >> shift
		}
		if x < n {
			return x
		}
	}
}

// roundCents rounds a price in euros to a shop price in cents: .95, .99 or
// .49 below 100 euros; from 100 euros up, a whole number ending in 4 or 9
// with .00 or .95.
func roundCents(euros float64, pick int) int {
	e := int(math.Floor(euros))
	if e < 1 {
		e = 1
	}
	if e >= 100 {
		e = e - e%5 + 4
		return e*100 + []int{0, 95}[pick%2]
	}
	return e*100 + []int{95, 99, 49}[pick%3]
}
