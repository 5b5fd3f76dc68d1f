package main

import "runtime/debug"

// version is stamped by `make build` and `make image` with
// -ldflags "-X main.version=$(git describe --always --dirty)". It stays
// empty in other builds; see versionString.
var version string

// versionString is what `locklock version` prints: the stamped version;
// else the module version Go recorded, which is the tag for
// `go install github.com/locklock/locklock/cmd/locklock@v1.2.3`; else
// "(devel)", what Go records for a plain `go build` in a checkout.
func versionString() string {
	return chooseVersion(version, debug.ReadBuildInfo)
}

func chooseVersion(stamped string, buildInfo func() (*debug.BuildInfo, bool)) string {
	if stamped != "" {
		return stamped
	}
	if bi, ok := buildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
