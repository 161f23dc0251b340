// Command etcd is etcd's own server (go.etcd.io/etcd/server/v3/etcdmain) at the version the
// pinned Kubernetes release requires, for the tests' real kube-apiserver.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
