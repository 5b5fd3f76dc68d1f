package clustertest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	docker "github.com/ory/dockertest/v3/docker"
)

// buildImages builds static locklock and etcd binaries and an image FROM
// scratch around each.
func (e *Env) buildImages() {
	t := e.t
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if e.buildDir, err = os.MkdirTemp("", "locklock-cluster-"+e.RunID+"-"); err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct{ name, pkg string }{
		{"locklock", "./cmd/locklock"},
		{"etcd", "./internal/clustertest/etcd-server"},
	} {
		dir := filepath.Join(e.buildDir, b.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		cmd := exec.CommandContext(e.ctx, goCommand(), "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, b.name), b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
		dockerfile, err := os.ReadFile(filepath.Join(root, "internal", "clustertest", "Dockerfile."+b.name))
		if err != nil {
			t.Fatal(err)
		}
		dockerfile, err = labelled(dockerfile, e.labels)
		if err != nil {
			t.Fatalf("internal/clustertest/Dockerfile.%s: %v", b.name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = e.create(func() error {
			err := e.Pool.Client.BuildImage(docker.BuildImageOptions{
				Name:                e.image(b.name),
				Dockerfile:          "Dockerfile",
				ContextDir:          dir,
				NoCache:             true,
				RmTmpContainer:      true,
				ForceRmTmpContainer: true,
				OutputStream:        &out,
				Context:             e.ctx,
			})
			e.buildCut = err != nil && e.ctx.Err() != nil
			return err
		})
		if err != nil {
			t.Fatalf("docker build %s: %v\n%s", b.name, err, out.String())
		}
		t.Logf("image %s: static %s built and packed in %v", e.image(b.name), b.pkg, time.Since(begin).Round(100*time.Millisecond))
	}
}

// labelled puts a LABEL step with labels right after the Dockerfile's FROM,
// so that every layer the build commits carries them (labels given to the
// build API come last, leaving the layers before them unlabelled: a build
// cut short would leave those behind, unfindable).
func labelled(dockerfile []byte, labels map[string]string) ([]byte, error) {
	lines := strings.Split(string(dockerfile), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(l)), "FROM ") {
			keys := slices.Sorted(maps.Keys(labels))
			step := "LABEL"
			for _, k := range keys {
				step += fmt.Sprintf(" %s=%q", k, labels[k])
			}
			lines = slices.Insert(lines, i+1, step)
			return []byte(strings.Join(lines, "\n")), nil
		}
	}
	return nil, errors.New("no FROM line")
}

func (e *Env) image(name string) string { return "locklock-cluster-" + name + ":" + e.RunID }

func moduleRoot() (string, error) {
	out, err := exec.Command(goCommand(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the locklock module")
	}
	return filepath.Dir(mod), nil
}

// goCommand is the go command: the one on PATH, or the one in
// /usr/local/go, where .ci/run and the README put it.
func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}
