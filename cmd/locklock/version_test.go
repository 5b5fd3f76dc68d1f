package main

import (
	"archive/zip"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestChooseVersion(t *testing.T) {
	info := func(v string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) { return &debug.BuildInfo{Main: debug.Module{Version: v}}, true }
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, c := range []struct {
		stamped string
		info    func() (*debug.BuildInfo, bool)
		want    string
	}{
		{"v1.2.3-4-gabcdef-dirty", info("v0.9.0"), "v1.2.3-4-gabcdef-dirty"}, // make build wins
		{"", info("v1.2.3"), "v1.2.3"},                                       // go install …@v1.2.3
		{"", info("(devel)"), "(devel)"},                                     // go build in a checkout
		{"", info(""), "(devel)"},
		{"", none, "(devel)"},
	} {
		if got := chooseVersion(c.stamped, c.info); got != c.want {
			t.Errorf("chooseVersion(%q, …) = %q, want %q", c.stamped, got, c.want)
		}
	}
}

// TestVersionStampedAndInstalled builds the binary the two ways a user gets
// one — stamped with -ldflags as `make build` does, and with `go install
// <module>/cmd/locklock@<version>` from a module proxy (a file:// proxy
// holding this checkout as version v0.0.1-test) — and runs `locklock
// version` on each.
func TestVersionStampedAndInstalled(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	stamped := filepath.Join(dir, "stamped")
	build := exec.Command(goBin, "build", "-ldflags", "-X main.version=v9.8.7-3-gdeadbee-dirty", "-o", stamped, "./cmd/locklock")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	checkVersion(t, stamped, "locklock v9.8.7-3-gdeadbee-dirty")

	const module, modVersion = "github.com/locklock/locklock", "v0.0.1-test"
	proxy := filepath.Join(dir, "proxy")
	writeModuleProxy(t, root, proxy, module, modVersion)
	gobin := filepath.Join(dir, "bin")
	upstream := strings.TrimSpace(goEnv(t, goBin, "GOPROXY"))
	// The dependencies come from the shared module cache's download
	// directory (itself a GOPROXY layout) where it has them, so the test
	// copies rather than downloads them.
	cached := "file://" + filepath.Join(strings.TrimSpace(goEnv(t, goBin, "GOMODCACHE")), "cache", "download")
	install := exec.Command(goBin, "install", module+"/cmd/locklock@"+modVersion)
	install.Dir = dir // outside the checkout: no main module
	install.Env = append(os.Environ(),
		"GOBIN="+gobin, "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0",
		"GOPROXY=file://"+proxy+","+cached+","+upstream, // this module from the file proxy, its dependencies as usual
		"GONOSUMDB="+module, "GOPRIVATE=",
		"GOMODCACHE="+filepath.Join(dir, "modcache"), // the fake version must not land in the shared cache
	)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install %s/cmd/locklock@%s: %v\n%s", module, modVersion, err, out)
	}
	checkVersion(t, filepath.Join(gobin, "locklock"), "locklock "+modVersion)
}

func checkVersion(t *testing.T, bin, want string) {
	t.Helper()
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("%s version = %q, want %q", filepath.Base(bin), got, want)
	}
}

func goEnv(t *testing.T, goBin, name string) string {
	t.Helper()
	out, err := exec.Command(goBin, "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return string(out)
}

// writeModuleProxy lays out a GOPROXY directory (the module proxy protocol
// over file://) holding the files git tracks in root as module@version.
func writeModuleProxy(t *testing.T, root, proxy, module, version string) {
	t.Helper()
	// Tracked files and new ones git does not ignore: the module as it
	// would be committed.
	files, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files (the module zip holds the tracked files): %v", err)
	}
	at := filepath.Join(proxy, filepath.FromSlash(module), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"list":            version + "\n",
		version + ".info": `{"Version":"` + version + `","Time":"2026-12-06T00:00:00Z"}`,
		version + ".mod":  string(gomod),
	} {
		if err := os.WriteFile(filepath.Join(at, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(at, version+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, name := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		b, err := os.ReadFile(filepath.Join(root, name))
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(module + "@" + version + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
