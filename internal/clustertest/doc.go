// Package clustertest is the cluster fault suite: three etcd members and three
// `locklock serve --engine etcd` servers in containers on a private Docker
// network, clients in the test process driving a mixed history through all
// three servers, and a nemesis that kills, freezes and cuts off one process
// at a time, then freezes one etcd member for 10 s — a follower, then the
// leader — and measures what that costs the clients (MeasureFrozen). The
// history is then checked three ways: porcupine with the lock model the
// conformance suite uses too (internal/lockmodel), a direct check that no
// two grants were held at once, and a fenced resource that must never take
// a stale write.
//
// The suite itself is TestCluster, behind the build tag "cluster" (it needs
// a Docker daemon and a few minutes): `make test-cluster`. What is in this
// package without the tag — the checks, the fenced resource, the Docker
// environment and the workload — is compiled and unit-tested by `make test`,
// the checks against hand-made histories that do and do not hold.
//
// Images are built FROM scratch out of the project's own static binaries
// (locklock, and internal/clustertest/etcd-server: etcd's own main at the
// version go.mod names), since no image registry can be reached. Every container, network
// and image carries the labels of its run; all of them are removed when the
// test ends, fails or is interrupted, and whatever a killed run left behind
// is removed by the next one.
package clustertest
