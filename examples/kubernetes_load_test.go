package examples_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// k8sDir holds the Kubernetes manifests and the README that says which
// secrets to create.
const k8sDir = "kubernetes"

// k8sManifests is every object of examples/kubernetes/*.yaml.
type k8sManifests struct {
	workloads []*k8sWorkload
	services  []*corev1.Service
	pdbs      []*policyv1.PodDisruptionBudget
	text      map[string]string // file → its text, comments included
}

// k8sWorkload is what the checks need of a StatefulSet or a Deployment.
type k8sWorkload struct {
	kind, name, file string
	replicas         int32
	selector         *metav1.LabelSelector
	pod              corev1.PodTemplateSpec
	claims           []corev1.PersistentVolumeClaim // a StatefulSet's volumeClaimTemplates
	serviceName      string                         // a StatefulSet's
}

func (w *k8sWorkload) String() string { return w.file + ": " + w.kind + " " + w.name }

// container is the workload's one container (checked by TestKubernetesManifests).
func (w *k8sWorkload) container() corev1.Container { return w.pod.Spec.Containers[0] }

// loadManifests decodes every YAML document under k8sDir strictly (an
// unknown or duplicated field is an error) into the Kubernetes API type its
// apiVersion and kind name. A kind the checks do not know is an error too.
func loadManifests(t *testing.T) *k8sManifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", k8sDir, err)
	}
	m := &k8sManifests{text: map[string]string{}}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		m.text[file] = string(data)
		docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := docs.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			m.decode(t, file, doc)
		}
	}
	return m
}

func (m *k8sManifests) decode(t *testing.T, file string, doc []byte) {
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	strict := func(into any) {
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s: %s: %v", file, meta.Kind, err)
		}
	}
	switch meta.APIVersion + " " + meta.Kind {
	case " ":
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil || v != nil {
			t.Fatalf("%s: a document without apiVersion and kind", file)
		}
	case "v1 Service":
		var s corev1.Service
		strict(&s)
		m.services = append(m.services, &s)
	case "apps/v1 StatefulSet":
		var s appsv1.StatefulSet
		strict(&s)
		m.workloads = append(m.workloads, &k8sWorkload{kind: "StatefulSet", name: s.Name, file: file,
			replicas: ptrOr(s.Spec.Replicas, 1), selector: s.Spec.Selector, pod: s.Spec.Template,
			claims: s.Spec.VolumeClaimTemplates, serviceName: s.Spec.ServiceName})
	case "apps/v1 Deployment":
		var d appsv1.Deployment
		strict(&d)
		m.workloads = append(m.workloads, &k8sWorkload{kind: "Deployment", name: d.Name, file: file,
			replicas: ptrOr(d.Spec.Replicas, 1), selector: d.Spec.Selector, pod: d.Spec.Template})
	case "policy/v1 PodDisruptionBudget":
		var p policyv1.PodDisruptionBudget
		strict(&p)
		m.pdbs = append(m.pdbs, &p)
	default:
		t.Fatalf("%s: %s %s: the test has no checks for this kind", file, meta.APIVersion, meta.Kind)
	}
}

// show is *p for a message, or "unset".
func show[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// envFlag is the `serve` flag a LOCKLOCK_ variable sets (LOCKLOCK_DATA_DIR
// → data-dir); "" for other variables.
func envFlag(name string) string {
	f, ok := strings.CutPrefix(name, "LOCKLOCK_")
	if !ok {
		return ""
	}
	return strings.ToLower(strings.ReplaceAll(f, "_", "-"))
}

// buildLocklock builds cmd/locklock into dir.
func buildLocklock(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the binary: %v", err)
	}
	bin := filepath.Join(dir, "locklock")
	build := exec.Command(goBin, "build", "-o", bin, "../cmd/locklock")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serveFlags are the flags `locklock serve -h` lists, each with the
// placeholder of its value ("file", "directory", "duration"; "" for a
// boolean): the server's own list, not a copy of it.
func serveFlags(t *testing.T, bin string) map[string]string {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-h")
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("locklock serve -h: %v\n%s", err, out)
	}
	flags := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)(?: (\S+))?$`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = m[2]
	}
	if flags["data-dir"] != "directory" || flags["keys-file"] != "file" {
		t.Fatalf("serve -h no longer reads as the test expects (data-dir %q, keys-file %q):\n%s", flags["data-dir"], flags["keys-file"], out)
	}
	return flags
}

// readmeSecrets are the secrets examples/kubernetes/README.md tells the
// user to create: name → key → its --from-file path or --from-literal value
// (quotes removed).
func readmeSecrets(t *testing.T, readme string) map[string]map[string]string {
	t.Helper()
	readme = strings.ReplaceAll(readme, "\\\n", " ")
	secrets := map[string]map[string]string{}
	cmd := regexp.MustCompile(`kubectl create secret generic (\S+)((?:\s+--from-(?:file|literal)=\S+)+)`)
	for _, m := range cmd.FindAllStringSubmatch(readme, -1) {
		keys := map[string]string{}
		for _, arg := range strings.Fields(m[2]) {
			_, kv, _ := strings.Cut(arg, "=")
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("README.md: %s: name the key (--from-file=KEY=PATH)", arg)
			}
			keys[k] = strings.Trim(v, `"'`)
		}
		secrets[m[1]] = keys
	}
	if len(secrets) == 0 {
		t.Fatal("README.md creates no secret")
	}
	return secrets
}

// parseGoMemLimit reads GOMEMLIMIT's syntax: bytes, or a number with one of
// the suffixes B, KiB, MiB, GiB, TiB.
func parseGoMemLimit(s string) (int64, error) {
	for i, suffix := range []string{"TiB", "GiB", "MiB", "KiB", "B"} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v << (10 * (4 - i)), err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
