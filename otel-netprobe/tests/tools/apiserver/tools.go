//go:build tools

// Package tools pins what scripts/gotools.sh builds from this module: the real kube-apiserver
// of the Kubernetes release in go.mod (and, in etcd/, the etcd server that release requires).
// The staging repositories (k8s.io/api, k8s.io/apiserver, ...) are replaced with their published
// v0.X.Y modules, since k8s.io/kubernetes's own go.mod points them at its source tree.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
