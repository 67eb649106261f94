// Package mappings holds Kith's ready-made import mappings (CRM contacts,
// orders with line items, e-mail engagement), each with an example input of
// the same base name, so `kith import --mapping orders` and the admin API's
// upload work without writing a mapping first. The files are plain YAML and
// CSV beside this file: copy one to start a mapping of your own.
package mappings

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed *.yaml *.csv
var files embed.FS

// Names lists the ready-made mappings.
func Names() []string {
	ents, _ := fs.Glob(files, "*.yaml")
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e, ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Mapping returns the mapping file called name (without .yaml).
func Mapping(name string) ([]byte, error) {
	b, err := files.ReadFile(strings.TrimSuffix(name, ".yaml") + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no ready-made mapping %q (there are: %s)", name, strings.Join(Names(), ", "))
	}
	return b, nil
}

// Example returns the example input of the mapping called name.
func Example(name string) ([]byte, error) {
	b, err := files.ReadFile(strings.TrimSuffix(name, ".yaml") + ".csv")
	if err != nil {
		return nil, fmt.Errorf("no example input for mapping %q", name)
	}
	return b, nil
}
