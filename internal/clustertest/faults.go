package clustertest

import (
	"fmt"
	"time"

	docker "github.com/ory/dockertest/v3/docker"
)

// Kill sends SIGKILL to the container's process.
func (n *Node) Kill() error {
	return n.env.Pool.Client.KillContainer(docker.KillContainerOptions{ID: n.ID, Signal: docker.SIGKILL})
}

// Restart starts the killed container again, with its data (etcd's data
// dir lives in the container's own layer) and its published port.
func (n *Node) Restart() error {
	// The kill is asynchronous: wait until docker has seen the process go.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := n.env.Pool.Client.InspectContainer(n.ID)
		if err != nil {
			return err
		}
		if !c.State.Running {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still running 10s after SIGKILL", n.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return n.env.Pool.Client.StartContainer(n.ID, nil)
}

// Pause freezes every process of the container (the cgroup freezer), as a
// stopped VM or a long GC pause would: sockets stay open, nothing answers.
func (n *Node) Pause() error { return n.env.Pool.Client.PauseContainer(n.ID) }

// Unpause thaws it.
func (n *Node) Unpause() error { return n.env.Pool.Client.UnpauseContainer(n.ID) }

// Disconnect cuts the container off the cluster's network: its peers and
// the locklock servers can no longer reach it, nor it them.
func (n *Node) Disconnect() error {
	return n.env.Pool.Client.DisconnectNetwork(n.env.Network.Network.ID, docker.NetworkConnectionOptions{Container: n.ID, Force: true})
}

// Connect puts it back; its name resolves again through Docker's DNS (its
// address may change, which is why everything names members by name).
func (n *Node) Connect() error {
	return n.env.Pool.Client.ConnectNetwork(n.env.Network.Network.ID, docker.NetworkConnectionOptions{
		Container:      n.ID,
		EndpointConfig: &docker.EndpointConfig{Aliases: []string{n.Name}},
	})
}
