// Command etcd-server is the etcd server the cluster fault suite runs in its
// containers: etcd's own entry point, built from the etcd version the
// module already uses (go.etcd.io/etcd/server/v3), so that no etcd image or
// binary has to be fetched. It takes etcd's flags unchanged.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
