// Command otelcol-netprobe is the OpenTelemetry Collector that otel-netprobe's tests, demo and
// chart run: built from the official Collector modules pinned in go.mod, with exactly the
// components the chart's configuration uses (see components.go). It is what the Collector
// builder (ocb) would generate for the same manifest, written out so that nothing but the Go
// module proxy is needed to build it.
package main

import (
	"log"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/otelcol"
)

// version is the Collector release this distribution is built from; the build sets it from
// go.mod (-ldflags -X main.version=...), and tests/collector_release.rs checks that the chart's
// image tag and collector-config/ name the same release.
var version = "dev"

func main() {
	settings := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-netprobe",
			Description: "OpenTelemetry Collector for otel-netprobe (official modules, chart's components only)",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					envprovider.NewFactory(),
					fileprovider.NewFactory(),
				},
				DefaultScheme: "env",
			},
		},
	}
	if err := otelcol.NewCommand(settings).Execute(); err != nil {
		log.Fatalf("collector finished with error: %v", err)
	}
}
