package deps

import (
	_ "github.com/google/go-tpm-tools/simulator"
	_ "github.com/google/go-tpm/tpm2"
	_ "github.com/mdlayher/vsock"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "gopkg.in/yaml.v3"
)
