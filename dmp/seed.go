package dmp

import (
	"encoding/csv"
	"io"
)

// SeedWriter writes a customer-list (look-alike seed) CSV file for one ad
// platform: a header row from Headers, then one row per person with the
// hex SHA-256 digests of the normalised e-mail address and phone number,
// either cell left empty when that identifier is missing or invalid. Values
// that are already SHA-256 digests are written as given, in lower case.
//
// The header is written by the first Write or Flush, so a file with no
// people still has its header. Call Flush when done; like csv.Writer, a
// SeedWriter buffers, and write errors may only show at Flush.
type SeedWriter struct {
	// DefaultRegion is the ISO 3166-1 alpha-2 region, such as "NL", that
	// phone numbers written without a country code belong to. When it is
	// empty such numbers are skipped. Set it before the first Write.
	DefaultRegion string

	cw       *csv.Writer
	platform Platform
	started  bool
}

// NewSeedWriter returns a SeedWriter that writes p's seed file format to w.
// An unknown platform is reported by the first Write or Flush.
func NewSeedWriter(w io.Writer, p Platform) *SeedWriter {
	return &SeedWriter{cw: csv.NewWriter(w), platform: p}
}

// Write adds one person to the file. It reports written false, and writes
// nothing, when neither email nor phone is a valid (or already hashed)
// identifier; a person with one valid identifier gets a row with the other
// cell empty. The error is non-nil only for an unknown platform or a write
// failure.
func (sw *SeedWriter) Write(email, phone string) (written bool, err error) {
	if err := sw.start(); err != nil {
		return false, err
	}
	e, eok := HashEmail(email, sw.platform)
	ph, pok := HashPhone(phone, sw.DefaultRegion, sw.platform)
	if !eok && !pok {
		return false, nil
	}
	if err := sw.cw.Write([]string{e, ph}); err != nil {
		return false, err
	}
	return true, nil
}

// Flush writes any buffered rows, and the header if nothing was written
// yet, to the underlying writer, and returns the first error met.
func (sw *SeedWriter) Flush() error {
	if err := sw.start(); err != nil {
		return err
	}
	sw.cw.Flush()
	return sw.cw.Error()
}

// start writes the header row once.
func (sw *SeedWriter) start() error {
	if sw.started {
		return nil
	}
	h := Headers(sw.platform)
	if h == nil {
		return ErrUnknownPlatform
	}
	if err := sw.cw.Write(h); err != nil {
		return err
	}
	sw.started = true
	return nil
}
