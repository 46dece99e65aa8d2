// Our main for a real kube-apiserver, the test peer of the Kubernetes subnet manager: k8s.io/kubernetes cannot be
// `go install`ed (its go.mod replaces its staging modules with local paths), so this module of ours runs the same
// command as upstream's cmd/kube-apiserver/apiserver.go, with the staging modules pinned in go.mod.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // the JSON log format, as upstream registers it
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go's metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // the version metric, as upstream
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
