package examples_test

import (
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// TestKubernetesManifests checks examples/kubernetes without a cluster: the
// manifests decode with the API types, and what a cluster would only show
// at run time holds — selectors select the pods, probes and Services reach
// the port the server listens on, the pods run as the restricted Pod
// Security Standard asks with a read-only root filesystem, Badger's
// directory is a subdirectory of its volume, every file setting lies on a
// volume, every secret is one README.md creates, and the kubelet waits for
// a clean stop. TestKubernetesWorkloadsRun runs the same settings as server
// processes.
func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	flags := serveFlags(t, buildLocklock(t, t.TempDir()))
	readme, err := os.ReadFile(filepath.Join(k8sDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := readmeSecrets(t, string(readme))

	// Any LOCKLOCK_ name, in a setting, a comment or the README, is a flag
	// of `locklock serve`: a misspelt one would be ignored without a word.
	m.text["README.md"] = string(readme)
	for file, text := range m.text {
		for _, name := range regexp.MustCompile(`LOCKLOCK_[A-Z0-9_]+`).FindAllString(text, -1) {
			if _, ok := flags[envFlag(name)]; !ok {
				t.Errorf("%s: %s is no flag of locklock serve", file, name)
			}
		}
	}
	if len(m.workloads) == 0 {
		t.Fatal("no StatefulSet or Deployment")
	}
	for _, w := range m.workloads {
		t.Run(w.file+"/"+w.name, func(t *testing.T) { checkWorkload(t, m, w, flags, secrets) })
	}
	for _, s := range m.services {
		checkService(t, m, s)
	}
	for _, p := range m.pdbs {
		w := selected(t, m, "PodDisruptionBudget "+p.Name, p.Spec.Selector)
		if w == nil {
			continue
		}
		// A budget that allows no disruption would stall every node drain.
		if allowed := disruptionsAllowed(t, p, w.replicas); allowed < 1 {
			t.Errorf("PodDisruptionBudget %s allows %d of %s's %d pods down, want at least 1", p.Name, allowed, w, w.replicas)
		}
	}
}

func checkWorkload(t *testing.T, m *k8sManifests, w *k8sWorkload, flags map[string]string, secrets map[string]map[string]string) {
	spec := w.pod.Spec
	checkName(t, w.name)
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("%d containers and %d init containers, want the one server", len(spec.Containers), len(spec.InitContainers))
	}
	c := w.container()
	if !matches(t, w.selector, w.pod.Labels) {
		t.Errorf("the selector %v does not select the pod template's labels %v", w.selector, w.pod.Labels)
	}
	// The image's ENTRYPOINT is /locklock; serve is its default CMD.
	if c.Image != "locklock:latest" || len(c.Command) != 0 || strings.Join(c.Args, " ") != "serve" {
		t.Errorf("image %q command %q args %q, want locklock:latest running its entrypoint with serve", c.Image, c.Command, c.Args)
	}
	if ptrOr(spec.AutomountServiceAccountToken, true) || ptrOr(spec.EnableServiceLinks, true) {
		t.Errorf("automountServiceAccountToken %v, enableServiceLinks %v: want both false (no API access; no LOCKLOCK_-named variables from Services)",
			show(spec.AutomountServiceAccountToken), show(spec.EnableServiceLinks))
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := env[e.Name]; dup {
			t.Errorf("%s is set twice", e.Name)
		}
		env[e.Name] = e
		if e.ValueFrom != nil && (e.ValueFrom.SecretKeyRef == nil || e.Value != "") {
			t.Errorf("%s: only values and secretKeyRefs are checked", e.Name)
		}
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
			if _, ok := secrets[ref.SecretKeyRef.Name][ref.SecretKeyRef.Key]; !ok {
				t.Errorf("%s comes from key %q of secret %q, which README.md does not create", e.Name, ref.SecretKeyRef.Key, ref.SecretKeyRef.Name)
			}
		}
	}
	value := func(name string) string { return env[name].Value }

	checkPorts(t, c, value)
	checkSecurity(t, w)
	checkVolumes(t, w, flags, value, secrets)
	if v, ok := env["LOCKLOCK_ETCD_PASSWORD"]; ok && v.ValueFrom == nil {
		t.Error("LOCKLOCK_ETCD_PASSWORD is written in the manifest; take it from a secret")
	}

	switch engine := value("LOCKLOCK_ENGINE"); engine {
	case "badger":
		// One process owns a Badger directory: a second replica would have
		// its own volume and grant the same locks again.
		if w.kind != "StatefulSet" || w.replicas != 1 {
			t.Errorf("Badger in a %s of %d replicas, want a StatefulSet of 1", w.kind, w.replicas)
		}
		svc := serviceNamed(m, w.serviceName)
		if svc == nil || !matches(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, w.pod.Labels) {
			t.Errorf("serviceName %q is no Service of the manifests selecting the pods", w.serviceName)
		}
	case "etcd":
		if w.replicas < 2 || value("LOCKLOCK_ETCD_ENDPOINTS") == "" {
			t.Errorf("etcd with %d replicas and endpoints %q, want several replicas on a named etcd", w.replicas, value("LOCKLOCK_ETCD_ENDPOINTS"))
		}
		var budget bool
		for _, p := range m.pdbs {
			budget = budget || matches(t, p.Spec.Selector, w.pod.Labels)
		}
		if !budget {
			t.Error("no PodDisruptionBudget selects the pods")
		}
	default:
		t.Errorf("LOCKLOCK_ENGINE %q, want badger or etcd set explicitly (memory loses every lock on a restart)", engine)
	}
	for _, tsc := range spec.TopologySpreadConstraints {
		if !matches(t, tsc.LabelSelector, w.pod.Labels) {
			t.Errorf("topology spread on %s does not select the pods", tsc.TopologyKey)
		}
	}

	// The kubelet sends SIGKILL terminationGracePeriodSeconds after it
	// starts a stop (preStop hook included); the server exits within its
	// shutdown timeout plus about half a second.
	shutdown, err := time.ParseDuration(value("LOCKLOCK_SHUTDOWN_TIMEOUT"))
	if err != nil || shutdown <= 0 {
		t.Errorf("LOCKLOCK_SHUTDOWN_TIMEOUT %q, want a duration set explicitly: %v", value("LOCKLOCK_SHUTDOWN_TIMEOUT"), err)
	}
	grace := time.Duration(ptrOr(spec.TerminationGracePeriodSeconds, corev1.DefaultTerminationGracePeriodSeconds)) * time.Second
	if spec.TerminationGracePeriodSeconds == nil || grace < preStopSleep(c)+shutdown+time.Second {
		t.Errorf("terminationGracePeriodSeconds %v, want at least the preStop sleep (%v) + LOCKLOCK_SHUTDOWN_TIMEOUT (%v) + 1s",
			show(spec.TerminationGracePeriodSeconds), preStopSleep(c), shutdown)
	}

	// Go's soft limit must lie under the container's hard one.
	mem, ok := c.Resources.Limits[corev1.ResourceMemory]
	if !ok || c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Errorf("resources %v, want CPU and memory requests and a memory limit", c.Resources)
	}
	if soft, err := parseGoMemLimit(value("GOMEMLIMIT")); err != nil || soft >= mem.Value() {
		t.Errorf("GOMEMLIMIT %q (%d bytes, %v), want it under the memory limit %s", value("GOMEMLIMIT"), soft, err, mem.String())
	}
}

// checkPorts: the server listens on a declared, named container port, and
// every probe asks that port the right path.
func checkPorts(t *testing.T, c corev1.Container, value func(string) string) {
	addr := value("LOCKLOCK_ADDR")
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("LOCKLOCK_ADDR %q: %v", addr, err)
	}
	if value("LOCKLOCK_OPS_ADDR") != "" {
		t.Fatal("LOCKLOCK_OPS_ADDR: the checks assume the probes on the API listener")
	}
	if value("LOCKLOCK_TLS_CERT") != "" {
		t.Fatal("LOCKLOCK_TLS_CERT: the checks assume plain HTTP probes")
	}
	if len(c.Ports) != 1 || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port || c.Ports[0].Name == "" {
		t.Fatalf("container ports %v, want one named port %s (LOCKLOCK_ADDR %s)", c.Ports, port, addr)
	}
	if errs := validation.IsValidPortName(c.Ports[0].Name); len(errs) > 0 {
		t.Errorf("port name %q: %v", c.Ports[0].Name, errs)
	}
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
		need  bool
	}{
		{"readiness", c.ReadinessProbe, "/readyz", true},
		{"liveness", c.LivenessProbe, "/healthz", true},
		// A startup probe holds the liveness probe back; it asks whether
		// the process answers, as liveness does.
		{"startup", c.StartupProbe, "/healthz", false},
	} {
		if p.probe == nil {
			if p.need {
				t.Errorf("no %s probe", p.kind)
			}
			continue
		}
		get := p.probe.HTTPGet
		if get == nil || get.Path != p.path || (get.Scheme != "" && get.Scheme != corev1.URISchemeHTTP) || !isPort(get.Port, c.Ports[0]) {
			t.Errorf("%s probe %+v, want GET %s on port %s (%s)", p.kind, get, p.path, c.Ports[0].Name, port)
		}
	}
	// /readyz waits up to 2 s for the engine.
	if p := c.ReadinessProbe; p != nil && p.TimeoutSeconds < 3 {
		t.Errorf("readiness timeoutSeconds %d, want at least 3 (/readyz may take 2 s)", p.TimeoutSeconds)
	}
}

// isPort says whether a probe's or Service's port names the container port,
// by name or by number.
func isPort(p intstr.IntOrString, cp corev1.ContainerPort) bool {
	if p.Type == intstr.String {
		return p.StrVal == cp.Name
	}
	return p.IntVal == cp.ContainerPort
}

// checkSecurity: non-root, nothing to escalate to, a read-only root
// filesystem: what the restricted Pod Security Standard asks, and more.
func checkSecurity(t *testing.T, w *k8sWorkload) {
	pod := ptrOr(w.pod.Spec.SecurityContext, corev1.PodSecurityContext{})
	c := ptrOr(w.container().SecurityContext, corev1.SecurityContext{})
	nonRoot, uid, gid := runAs(w)
	if !ptrOr(nonRoot, false) || ptrOr(uid, 0) == 0 || ptrOr(gid, 0) == 0 {
		t.Errorf("runAsNonRoot %v, runAsUser %v, runAsGroup %v: want non-root, a non-zero uid and gid", show(nonRoot), show(uid), show(gid))
	}
	if !ptrOr(c.ReadOnlyRootFilesystem, false) || ptrOr(c.AllowPrivilegeEscalation, true) || c.Capabilities == nil ||
		strings.Join(capNames(c.Capabilities.Drop), ",") != "ALL" || len(c.Capabilities.Add) > 0 {
		t.Errorf("container securityContext %+v, want a read-only root filesystem, no privilege escalation, every capability dropped", c)
	}
	if ptrOr(c.Privileged, false) || w.pod.Spec.HostNetwork || w.pod.Spec.HostPID || w.pod.Spec.HostIPC {
		t.Error("privileged, or in the node's network, process or IPC namespace")
	}
	if sp := pod.SeccompProfile; sp == nil || sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile %v, want RuntimeDefault", sp)
	}
	if c.SeccompProfile != nil && c.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container seccompProfile %v, want RuntimeDefault or the pod's", c.SeccompProfile)
	}
	for _, v := range w.pod.Spec.Volumes {
		if v.Secret == nil && v.EmptyDir == nil && v.PersistentVolumeClaim == nil {
			t.Errorf("volume %s: want a secret, an emptyDir or a claim (no host paths)", v.Name)
		}
	}
}

// runAs is the container's runAsNonRoot, runAsUser and runAsGroup: its
// own, else the pod's.
func runAs(w *k8sWorkload) (nonRoot *bool, uid, gid *int64) {
	pod := ptrOr(w.pod.Spec.SecurityContext, corev1.PodSecurityContext{})
	c := ptrOr(w.container().SecurityContext, corev1.SecurityContext{})
	nonRoot, uid, gid = pod.RunAsNonRoot, pod.RunAsUser, pod.RunAsGroup
	if c.RunAsNonRoot != nil {
		nonRoot = c.RunAsNonRoot
	}
	if c.RunAsUser != nil {
		uid = c.RunAsUser
	}
	if c.RunAsGroup != nil {
		gid = c.RunAsGroup
	}
	return nonRoot, uid, gid
}

func capNames(cs []corev1.Capability) []string {
	var out []string
	for _, c := range cs {
		out = append(out, string(c))
	}
	return out
}

// checkVolumes: every mount has its volume and every volume a mount; every
// setting naming a file or directory lies on a volume (the root filesystem
// is read-only); Badger's directory is a subdirectory of a claimed,
// writable volume; files come from secrets README.md creates.
func checkVolumes(t *testing.T, w *k8sWorkload, flags map[string]string, value func(string) string, secrets map[string]map[string]string) {
	c := w.container()
	mounted := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		mounted[vm.Name] = true
		if volumeOf(w, vm.Name) == nil {
			t.Errorf("volumeMount %s at %s: no volume or volumeClaimTemplate of that name", vm.Name, vm.MountPath)
		}
	}
	for _, v := range w.pod.Spec.Volumes {
		if !mounted[v.Name] {
			t.Errorf("volume %s is not mounted", v.Name)
		}
		if v.Secret != nil {
			// The files are root's: the server's user reads them as other,
			// or through fsGroup, which the kubelet gives read on them.
			mode := ptrOr(v.Secret.DefaultMode, corev1.SecretVolumeSourceDefaultMode)
			if mode&0o004 == 0 && ptrOr(w.pod.Spec.SecurityContext, corev1.PodSecurityContext{}).FSGroup == nil {
				t.Errorf("volume %s: mode %#o and no fsGroup: the server's user cannot read the files", v.Name, mode)
			}
			if _, ok := secrets[v.Secret.SecretName]; !ok {
				t.Errorf("volume %s: secret %q, which README.md does not create", v.Name, v.Secret.SecretName)
			}
			for _, item := range v.Secret.Items {
				if _, ok := secrets[v.Secret.SecretName][item.Key]; !ok {
					t.Errorf("volume %s: key %q of secret %q, which README.md does not create", v.Name, item.Key, v.Secret.SecretName)
				}
			}
		}
	}
	for _, pvc := range w.claims {
		if !mounted[pvc.Name] {
			t.Errorf("volumeClaimTemplate %s is not mounted", pvc.Name)
		}
	}

	for _, e := range c.Env {
		placeholder, ok := flags[envFlag(e.Name)]
		if !ok || (placeholder != "file" && placeholder != "directory") || e.Value == "" {
			continue
		}
		vm, rel, ok := mountFor(c, e.Value)
		if !ok {
			t.Errorf("%s=%s is on no volume (the root filesystem is read-only)", e.Name, e.Value)
			continue
		}
		v := volumeOf(w, vm.Name)
		switch {
		case placeholder == "directory":
			// A subdirectory: a fresh volume's root is root's, and may hold
			// lost+found.
			if v.PersistentVolumeClaim == nil || vm.ReadOnly || rel == "" {
				t.Errorf("%s=%s: want a subdirectory of a writable volumeClaimTemplate, not %s at %s", e.Name, e.Value, vm.Name, vm.MountPath)
			}
			if ptrOr(w.pod.Spec.SecurityContext, corev1.PodSecurityContext{}).FSGroup == nil {
				t.Error("no fsGroup: the server's user could not write in a fresh volume")
			}
		case v.Secret == nil || !vm.ReadOnly:
			t.Errorf("%s=%s: on volume %s, want a secret mounted read-only", e.Name, e.Value, vm.Name)
		default:
			if _, ok := secrets[v.Secret.SecretName][secretKeyAt(v.Secret, rel)]; !ok {
				t.Errorf("%s=%s: no key %q in secret %q as README.md creates it", e.Name, e.Value, rel, v.Secret.SecretName)
			}
		}
	}
	if value("LOCKLOCK_ENGINE") == "badger" && value("LOCKLOCK_DATA_DIR") == "" {
		t.Error("LOCKLOCK_DATA_DIR is not set: the default ./locklock-data is on the read-only root filesystem")
	}
}

// volumeOf is the pod volume or the claim template called name, as a
// Volume (a claim template as a persistentVolumeClaim source).
func volumeOf(w *k8sWorkload, name string) *corev1.Volume {
	for i := range w.pod.Spec.Volumes {
		if w.pod.Spec.Volumes[i].Name == name {
			return &w.pod.Spec.Volumes[i]
		}
	}
	for _, pvc := range w.claims {
		if pvc.Name == name {
			return &corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}
		}
	}
	return nil
}

// mountFor is the mount whose path is a parent of p, and p relative to it.
func mountFor(c corev1.Container, p string) (corev1.VolumeMount, string, bool) {
	p = path.Clean(p)
	for _, vm := range c.VolumeMounts {
		mp := path.Clean(vm.MountPath)
		if p == mp {
			return vm, "", true
		}
		if rel, ok := strings.CutPrefix(p, mp+"/"); ok {
			return vm, rel, true
		}
	}
	return corev1.VolumeMount{}, "", false
}

// secretKeyAt is the secret's key that appears as the file rel of its volume.
func secretKeyAt(s *corev1.SecretVolumeSource, rel string) string {
	if len(s.Items) == 0 {
		return rel
	}
	for _, item := range s.Items {
		if path.Clean(item.Path) == rel {
			return item.Key
		}
	}
	return ""
}

func preStopSleep(c corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// checkService: the Service selects the pods of exactly one workload, and
// sends to the port the server listens on.
func checkService(t *testing.T, m *k8sManifests, s *corev1.Service) {
	checkName(t, s.Name)
	if errs := validation.IsDNS1035Label(s.Name); len(errs) > 0 {
		t.Errorf("Service name %q: %v", s.Name, errs)
	}
	w := selected(t, m, "Service "+s.Name, &metav1.LabelSelector{MatchLabels: s.Spec.Selector})
	if w == nil {
		return
	}
	if len(s.Spec.Ports) == 0 {
		t.Errorf("Service %s has no ports", s.Name)
	}
	for _, p := range s.Spec.Ports {
		target := p.TargetPort
		if target == (intstr.IntOrString{}) {
			target = intstr.FromInt32(p.Port) // targetPort defaults to port
		}
		if !isPort(target, w.container().Ports[0]) {
			t.Errorf("Service %s port %d sends to %s, want the container port %v", s.Name, p.Port, target.String(), w.container().Ports[0])
		}
	}
}

// selected is the one workload whose pods sel selects; several or none is
// an error (two workloads behind one Service would mix Badger and etcd).
func selected(t *testing.T, m *k8sManifests, what string, sel *metav1.LabelSelector) *k8sWorkload {
	var found []*k8sWorkload
	for _, w := range m.workloads {
		if matches(t, sel, w.pod.Labels) {
			found = append(found, w)
		}
	}
	if len(found) != 1 {
		t.Errorf("%s selects the pods of %d workloads %v, want one", what, len(found), found)
		return nil
	}
	return found[0]
}

// matches says whether sel, which must not be empty, selects set.
func matches(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		t.Errorf("an empty selector selects everything")
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("selector %v: %v", sel, err)
		return false
	}
	return s.Matches(labels.Set(set))
}

func disruptionsAllowed(t *testing.T, p *policyv1.PodDisruptionBudget, replicas int32) int {
	if (p.Spec.MaxUnavailable == nil) == (p.Spec.MinAvailable == nil) {
		t.Errorf("PodDisruptionBudget %s: want one of maxUnavailable and minAvailable", p.Name)
		return 0
	}
	if p.Spec.MaxUnavailable != nil {
		n, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, int(replicas), true)
		if err != nil {
			t.Error(err)
		}
		return n
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, int(replicas), true)
	if err != nil {
		t.Error(err)
	}
	return int(replicas) - n
}

func serviceNamed(m *k8sManifests, name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func checkName(t *testing.T, name string) {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		t.Errorf("name %q: %v", name, errs)
	}
}
