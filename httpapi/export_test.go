package httpapi

import "github.com/kithcdp/kith/imports"

// SetUploadLimits replaces the limits uploads are read with, for a test
// that cannot afford a gigabyte; the returned function restores them.
func SetUploadLimits(l imports.Limits) (restore func()) {
	old := uploadLimits
	uploadLimits = l
	return func() { uploadLimits = old }
}
