package dmp

import (
	"errors"
	"fmt"
	"strings"
)

// Platform names an ad platform that takes customer-list uploads. The zero
// value is not a platform.
type Platform int

// The ad platforms Kith writes customer lists for.
const (
	// PlatformMeta is Meta (Facebook and Instagram) Custom Audiences from a
	// customer list.
	PlatformMeta Platform = iota + 1
	// PlatformGoogle is Google Ads Customer Match.
	PlatformGoogle
)

// ErrUnknownPlatform is returned, wrapped, for a platform name or value that
// is neither Meta nor Google.
var ErrUnknownPlatform = errors.New("dmp: unknown platform")

// String returns the platform's name as ParsePlatform accepts it: "meta" or
// "google".
func (p Platform) String() string {
	switch p {
	case PlatformMeta:
		return "meta"
	case PlatformGoogle:
		return "google"
	}
	return fmt.Sprintf("Platform(%d)", int(p))
}

// valid reports whether p is one of the known platforms.
func (p Platform) valid() bool {
	return p == PlatformMeta || p == PlatformGoogle
}

// ParsePlatform returns the platform called name, "meta" or "google",
// ignoring case and surrounding white space. Any other name gives an error
// wrapping ErrUnknownPlatform.
func ParsePlatform(name string) (Platform, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "meta":
		return PlatformMeta, nil
	case "google":
		return PlatformGoogle, nil
	}
	return 0, fmt.Errorf("%w %q (want \"meta\" or \"google\")", ErrUnknownPlatform, name)
}

// Headers returns the CSV header row of a seed file for p: the e-mail column
// then the phone column, spelt as the platform documents them for
// customer-list file uploads. It returns nil for an unknown platform. The
// slice is new on every call.
func Headers(p Platform) []string {
	switch p {
	case PlatformMeta:
		// Meta Business Help Centre, "How to format a customer list when
		// creating a custom audience"
		// (https://www.facebook.com/business/help/2082575038703844): the
		// column header for e-mail addresses is "email" and for phone
		// numbers "phone" (the others are madid, fn, ln, ct, st, zip,
		// country, dob, doby, gen, age, uid and value), all lower case.
		return []string{"email", "phone"}
	case PlatformGoogle:
		// Google Ads Help, "Formatting guidelines for uploading hashed data"
		// (https://support.google.com/google-ads/answer/7476159): use the
		// English header names "Email", "Phone", "First Name", "Last Name",
		// "Country" and "Zip"; the Customer Match CSV template it links to
		// spells its header row the same way.
		return []string{"Email", "Phone"}
	}
	return nil
}
