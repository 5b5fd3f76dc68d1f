package keys

import (
	"encoding/json"
	"fmt"
	"os"
)

// Parse decodes and validates a keys file (see the package doc for the
// rules). Its errors do not name a file; [Load] adds the path.
func Parse(data []byte) (File, error) {
	sawAnonymous, err := checkShape(data)
	if err != nil {
		return File{}, err
	}
	// checkShape has vetted every name, type and number, so this cannot
	// fail on the things encoding/json is lax about (case-insensitive
	// names, duplicates, nulls).
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return File{}, fmt.Errorf("invalid keys file: %w", err)
	}
	if !sawAnonymous {
		f.Anonymous = &AnonymousPolicy{Plan: PlanDeveloper}
	}
	if f.Plans == nil {
		f.Plans = map[string]Plan{}
	}
	if len(f.Keys) == 0 {
		f.Keys = nil // as in Default
	}
	if err := validatePlans(f.Plans); err != nil {
		return File{}, err
	}
	if _, ok := f.Plans[PlanDeveloper]; !sawAnonymous && !ok {
		return File{}, fmt.Errorf(`anonymous: with no "anonymous" field anonymous callers get plan %q, which does not exist (%s); define it, or set "anonymous": null to turn anonymous access off`,
			PlanDeveloper, describePlans(planNames(f.Plans)))
	}
	if err := f.Validate(); err != nil {
		return File{}, err
	}
	return f, nil
}

// Load reads and parses the keys file at path. A missing file is an error:
// an operator who names a keys file means it.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, err // *PathError: names the file and the reason
	}
	f, err := Parse(data)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
