package clustertest

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	docker "github.com/ory/dockertest/v3/docker"
)

// removeStale removes what earlier runs left behind when their process was
// killed before it could clean up (SIGKILL, go test's -timeout panic).
func (e *Env) removeStale() {
	owners := map[string]bool{}
	containers, _ := e.Pool.Client.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{"label": {labelSuite}}})
	for _, c := range containers {
		owners[c.Labels[labelRun]+"/"+c.Labels[labelPID]] = true
	}
	networks, _ := e.Pool.Client.FilteredListNetworks(docker.NetworkFilterOpts{"label": {labelSuite: true}})
	for _, n := range networks {
		owners[n.Labels[labelRun]+"/"+n.Labels[labelPID]] = true
	}
	images, _ := e.Pool.Client.ListImages(docker.ListImagesOptions{All: true, Filters: map[string][]string{"label": {labelSuite}}})
	for _, im := range images {
		owners[im.Labels[labelRun]+"/"+im.Labels[labelPID]] = true
	}
	for owner := range owners {
		run, pid, _ := strings.Cut(owner, "/")
		if p, err := strconv.Atoi(pid); err == nil && processAlive(p) {
			e.t.Logf("leaving run %s alone: its process %d still runs", run, p)
			continue
		}
		n := e.sweep(map[string][]string{"label": {labelRun + "=" + run}})
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "locklock-cluster-"+run+"-*"))
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
		e.t.Logf("removed %s and %d build directories left behind by run %s", n, len(dirs), run)
	}
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// sweep removes the containers, images and networks matching filter and
// says what it removed.
func (e *Env) sweep(filter map[string][]string) string {
	var nc, nn, ni int
	containers, err := e.Pool.Client.ListContainers(docker.ListContainersOptions{All: true, Filters: filter})
	if err != nil {
		e.t.Logf("list containers: %v", err)
	}
	for _, c := range containers {
		// Force removal kills a running container; a paused one is
		// thawed first so that the kill lands.
		_ = e.Pool.Client.UnpauseContainer(c.ID)
		if err := e.Pool.Client.RemoveContainer(docker.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true}); err != nil {
			e.t.Logf("remove container %s: %v", c.Names, err)
			continue
		}
		nc++
	}
	// Newest first: an image built on another goes before it. Removing
	// the built image also removes the untagged layers of its build,
	// labelled or not.
	images, err := e.Pool.Client.ListImages(docker.ListImagesOptions{All: true, Filters: filter})
	if err != nil {
		e.t.Logf("list images: %v", err)
	}
	slices.SortFunc(images, func(a, b docker.APIImages) int { return cmp.Compare(b.Created, a.Created) })
	for _, im := range images {
		err := e.Pool.Client.RemoveImageExtended(im.ID, docker.RemoveImageOptions{Force: true})
		switch {
		case errors.Is(err, docker.ErrNoSuchImage):
			// a layer of a build, gone with the image built on it
		case err != nil:
			e.t.Logf("remove image %v: %v", im.RepoTags, err)
		case len(im.RepoTags) > 0 && im.RepoTags[0] != "<none>:<none>":
			ni++
		}
	}
	networks, err := e.Pool.Client.FilteredListNetworks(docker.NetworkFilterOpts{"label": {filter["label"][0]: true}})
	if err != nil {
		e.t.Logf("list networks: %v", err)
	}
	for _, n := range networks {
		if err := e.Pool.Client.RemoveNetwork(n.ID); err != nil {
			e.t.Logf("remove network %s: %v", n.Name, err)
			continue
		}
		nn++
	}
	return fmt.Sprintf("%d containers, %d networks, %d images", nc, nn, ni)
}
