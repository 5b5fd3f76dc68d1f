package examples_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/locklock/locklock/internal/tmpfs"

	corev1 "k8s.io/api/core/v1"

	"github.com/locklock/locklock/internal/etcdtest"
)

// TestKubernetesWorkloadsRun runs each workload's container as the kubelet
// would, as far as a test can without a cluster: `locklock serve` with the
// container's args and environment only, secret values from README.md's
// `kubectl create secret` lines, each volume a directory of its own (a
// claim's root holding lost+found, as a fresh ext4 volume does; a secret's
// files in defaultMode) given the kubelet's fsGroup treatment, as the pod's
// uid, gid and fsGroup when the test runs as root; as many processes as
// replicas, on an embedded etcd with authentication on for the etcd engine. The listen address and etcd endpoints are swapped for local ones.
// Each pod must answer its probes' paths with 200, serve a lock with the
// API key from the keys file, and exit 0 in time on SIGTERM; Badger's lock
// must still be there after a restart on the same volume.
//
// Not covered: the image itself (its user, its CA certificates) and the
// read-only root filesystem, beyond TMPDIR pointing at a missing directory
// (the server must not write temporary files) and the static check that
// every file setting lies on a volume.
func TestKubernetesWorkloadsRun(t *testing.T) {
	m := loadManifests(t)
	dir := tmpfs.PublicDir(t)
	bin := buildLocklock(t, dir)
	flags := serveFlags(t, bin)
	readme, err := os.ReadFile(filepath.Join(k8sDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}

	// The secrets, made as README.md makes them: keys.json by `keys new`.
	keysFile := filepath.Join(t.TempDir(), "keys.json")
	cmd := exec.Command(bin, "keys", "new", "--keys-file", keysFile, "--namespace", "acme", "--plan", "pro")
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("locklock keys new: %v", err)
	}
	apiKey := strings.TrimSpace(string(out))
	if os.Getuid() != 0 {
		t.Logf("not root: the servers run as uid %d, not as the pods' user, on volumes of their own (fsGroup is not exercised)", os.Getuid())
	}
	secrets := map[string]map[string][]byte{}
	for name, keys := range readmeSecrets(t, string(readme)) {
		secrets[name] = map[string][]byte{}
		for k, v := range keys {
			switch {
			case v == "keys.json":
				secrets[name][k], err = os.ReadFile(keysFile)
				if err != nil {
					t.Fatal(err)
				}
			case strings.Contains(v, "$"): // typed in by the user
				secrets[name][k] = []byte(fmt.Sprintf("%s-%d", k, time.Now().UnixNano()))
			default:
				secrets[name][k] = []byte(v)
			}
		}
	}

	for _, w := range m.workloads {
		t.Run(w.file+"/"+w.name, func(t *testing.T) {
			k := &kubelet{t: t, bin: bin, w: w, flags: flags, secrets: secrets, env: map[string]string{}}
			if k.value("LOCKLOCK_ENGINE") == "etcd" {
				k.env["LOCKLOCK_ETCD_ENDPOINTS"] = etcdtest.WithAuth(t, k.value("LOCKLOCK_ETCD_PREFIX"),
					k.value("LOCKLOCK_ETCD_USERNAME"), k.value("LOCKLOCK_ETCD_PASSWORD")).ClientURL
			}
			var pods []*pod
			for i := range w.replicas {
				pods = append(pods, k.start(filepath.Join(tmpfs.PublicDir(t), fmt.Sprint(i))))
			}
			lock := "/v1/api/lock/key/k8s-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			for i, p := range pods {
				want := http.StatusCreated // the first pod grants it, the others share its store
				if i > 0 {
					want = http.StatusConflict
				}
				if code := p.call(t, "POST", lock, apiKey, fmt.Sprintf(`{"secret":"pod%d","expires_in":600}`, i)); code != want {
					t.Errorf("pod %d: acquire %s: %d, want %d", i, lock, code, want)
				}
			}
			for _, p := range pods {
				k.stop(p)
			}
			if w.claims != nil {
				// The same volume, a new process: the lock is still held.
				p := k.start(pods[0].root)
				if code := p.call(t, "GET", lock, apiKey, ""); code != http.StatusOK {
					t.Errorf("after a restart on the same volume: GET %s: %d, want 200", lock, code)
				}
				k.stop(p)
			}
		})
	}
}

// kubelet starts a workload's pods as local processes.
type kubelet struct {
	t       *testing.T
	bin     string
	w       *k8sWorkload
	flags   map[string]string
	secrets map[string]map[string][]byte
	env     map[string]string // replacements for the container's values
}

// pod is one running server.
type pod struct {
	root string // the pod's volumes are under it, at their mount paths
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	out  *watcher
	done chan error
}

// value is the container's variable: its value or its secret's.
func (k *kubelet) value(name string) string {
	for _, e := range k.w.container().Env {
		if e.Name != name {
			continue
		}
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
			v, ok := k.secrets[ref.SecretKeyRef.Name][ref.SecretKeyRef.Key]
			if !ok {
				k.t.Fatalf("%s: no key %s in secret %s", name, ref.SecretKeyRef.Key, ref.SecretKeyRef.Name)
			}
			return string(v)
		}
		return e.Value
	}
	return ""
}

// start makes the pod's volumes under root (kept if they exist: a
// restarted pod keeps its claim) and starts the server.
func (k *kubelet) start(root string) *pod {
	t, c := k.t, k.w.container()
	sc := ptrOr(k.w.pod.Spec.SecurityContext, corev1.PodSecurityContext{})
	asRoot := os.Getuid() == 0
	fsGroup := int(ptrOr(sc.FSGroup, 0))
	for _, vm := range c.VolumeMounts {
		dir := filepath.Join(root, vm.MountPath)
		if _, err := os.Stat(dir); err == nil {
			continue
		}
		mkdir(t, dir, 0o755)
		v := volumeOf(k.w, vm.Name)
		switch {
		case v.PersistentVolumeClaim != nil || v.EmptyDir != nil:
			mkdir(t, filepath.Join(dir, "lost+found"), 0o700) // a fresh ext4 volume
			if asRoot && fsGroup != 0 {
				setVolumeOwnership(t, dir, fsGroup, false)
			}
		case v.Secret != nil:
			mode := os.FileMode(ptrOr(v.Secret.DefaultMode, corev1.SecretVolumeSourceDefaultMode))
			for key, data := range k.secrets[v.Secret.SecretName] {
				file := filepath.Join(dir, key)
				if err := os.WriteFile(file, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(file, mode); err != nil {
					t.Fatal(err)
				}
			}
			if asRoot && fsGroup != 0 {
				setVolumeOwnership(t, dir, fsGroup, true) // a secret volume is read-only
			}
		default:
			t.Fatalf("volume %s: the test makes only claims, emptyDirs and secrets", vm.Name)
		}
	}

	// The container's environment and nothing else. TMPDIR names a missing
	// directory: on a read-only root filesystem no temporary file can be made.
	env := []string{"TMPDIR=" + filepath.Join(root, "no-tmp")}
	for _, e := range c.Env {
		v := k.value(e.Name)
		if r, ok := k.env[e.Name]; ok {
			v = r
		}
		switch p := k.flags[envFlag(e.Name)]; {
		case e.Name == "LOCKLOCK_ADDR":
			v = "127.0.0.1:0"
		case p == "file" || p == "directory":
			if _, _, ok := mountFor(c, v); !ok {
				t.Fatalf("%s=%s is on no volume", e.Name, v)
			}
			v = filepath.Join(root, v)
		}
		env = append(env, e.Name+"="+v)
	}
	cmd := exec.Command(k.bin, c.Args...)
	cmd.Env = env
	uid := int64(os.Getuid())
	if asRoot {
		_, runUID, runGID := runAs(k.w)
		if runUID == nil || runGID == nil {
			t.Fatal("no runAsUser or runAsGroup: the server would run as root")
		}
		uid = *runUID
		cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(*runGID)}
		if fsGroup != 0 {
			cred.Groups = []uint32{uint32(fsGroup)}
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	p := &pod{root: root, cmd: cmd, done: make(chan error, 1),
		out: &watcher{re: regexp.MustCompile(`locklock serving"?[ ,]"?addr"?[=:]"?(127\.0\.0\.1:\d+)`), found: make(chan string, 1)}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // done by then if stop ran
	select {
	case addr := <-p.out.found:
		p.base = "http://" + addr
	case err := <-p.done:
		t.Fatalf("the server exited before listening: %v\n%s", err, p.out)
	case <-time.After(30 * time.Second):
		t.Fatalf("the server did not listen within 30s:\n%s", p.out)
	}
	k.probe(p)
	// The directories the server made (Badger's) are the pod user's, 0700.
	for _, e := range env {
		name, v, _ := strings.Cut(e, "=")
		if k.flags[envFlag(name)] != "directory" {
			continue
		}
		fi, err := os.Stat(v)
		if err != nil {
			t.Fatal(err)
		}
		if owner := fi.Sys().(*syscall.Stat_t).Uid; int64(owner) != uid || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: owner %d mode %v, want uid %d and 0700", name, owner, fi.Mode().Perm(), uid)
		}
	}
	return p
}

// probe asks each probe's path until it answers 200, as the kubelet does
// (readiness waits for the engine: etcd may take a moment).
func (k *kubelet) probe(p *pod) {
	c := k.w.container()
	for _, pr := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			continue
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			code := p.call(k.t, "GET", pr.HTTPGet.Path, "", "")
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				k.t.Fatalf("GET %s: %d, want 200\n%s", pr.HTTPGet.Path, code, p.out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// stop sends SIGTERM and wants exit status 0 before the kubelet would kill
// the server: terminationGracePeriodSeconds less the preStop sleep.
func (k *kubelet) stop(p *pod) {
	c := k.w.container()
	limit := time.Duration(ptrOr(k.w.pod.Spec.TerminationGracePeriodSeconds, 30))*time.Second - preStopSleep(c)
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		k.t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			k.t.Errorf("after SIGTERM: %v, want exit status 0\n%s", err, p.out)
		}
		k.t.Logf("stopped in %v (the kubelet would wait %v)", time.Since(start).Round(time.Millisecond), limit)
	case <-time.After(limit):
		k.t.Fatalf("still running %v after SIGTERM: the kubelet would kill it\n%s", limit, p.out)
	}
}

// call sends one request and returns the status code (0 if none came).
func (p *pod) call(t *testing.T, method, path, key, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// setVolumeOwnership does what the kubelet does to a volume for a pod's
// fsGroup (SetVolumeOwnership in kubernetes/pkg/volume): every file and
// directory in it gets the group, read and write for the group (read only
// on a read-only volume), and directories setgid and search, so that files
// made later get the group too.
func setVolumeOwnership(t *testing.T, dir string, fsGroup int, readOnly bool) {
	t.Helper()
	err := filepath.Walk(dir, func(name string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if err := os.Chown(name, int(fi.Sys().(*syscall.Stat_t).Uid), fsGroup); err != nil {
			return err
		}
		mask := os.FileMode(0o660)
		if readOnly {
			mask = 0o440
		}
		if fi.IsDir() {
			mask |= os.ModeSetgid | 0o110
		}
		return os.Chmod(name, fi.Mode()|mask)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}
