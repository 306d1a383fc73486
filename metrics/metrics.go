// Package metrics holds the agent's Prometheus metrics: requests by
// operation and status, request and TPM command latency, TPM response codes,
// queue depth per peer, refusals by reason, and open connections.
package metrics

import (
	"fmt"
	"strconv"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Latency buckets, in seconds. A TPM command takes from about 50µs (a
// ReadPublic on a simulator) to about a second (an RSA key operation on a
// slow hardware TPM); a request adds its wait in the queue.
var latencyBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
}

// Metrics is the agent's set of metrics, registered in their own registry.
// Its methods are safe for concurrent use.
type Metrics struct {
	// Registry holds every vcomlink_ metric, and the Go runtime and process
	// collectors.
	Registry *prometheus.Registry

	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	tpmLatency   *prometheus.HistogramVec
	tpmResponses *prometheus.CounterVec
	refusals     *prometheus.CounterVec
	connections  prometheus.Gauge
}

// New creates the metrics and registers them.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vcomlink_requests_total",
			Help: "Guest requests completed, by operation and HTTP status.",
		}, []string{"op", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vcomlink_request_duration_seconds",
			Help:    "Time from a guest request's headers to its response, by operation, including the wait for the TPM.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		tpmLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vcomlink_tpm_command_duration_seconds",
			Help:    "Time the TPM took to answer one command, by command.",
			Buckets: latencyBuckets,
		}, []string{"command"}),
		tpmResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vcomlink_tpm_responses_total",
			Help: "TPM responses by command and response code (0x000 is success).",
		}, []string{"command", "rc"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vcomlink_refusals_total",
			Help: "Guest requests refused before they reached the TPM, by reason.",
		}, []string{"reason"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vcomlink_open_connections",
			Help: "Guest connections currently open.",
		}),
	}
	for _, reason := range RefusalReasons {
		m.refusals.WithLabelValues(reason)
	}
	m.Registry.MustRegister(
		m.requests, m.latency, m.tpmLatency, m.tpmResponses, m.refusals, m.connections,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// RefusalReasons are the reasons for which the server refuses a request
// before it reaches the TPM. Each series exists from the start, at zero,
// so that an alert rule can rely on it.
var RefusalReasons = []string{
	"policy", "host_configuration", "invalid", "invalid_http", "unknown_path",
	"method", "body_timeout", "body_too_large", "connections", "rate",
	"shutting_down",
}

// ObserveRequest counts a completed guest request.
func (m *Metrics) ObserveRequest(op string, status int, d time.Duration) {
	m.requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(op).Observe(d.Seconds())
}

// ObserveTPMCommand records one TPM command: its command code, response
// code and duration.
func (m *Metrics) ObserveTPMCommand(command uint32, rc uint32, d time.Duration) {
	name := CommandName(command)
	m.tpmLatency.WithLabelValues(name).Observe(d.Seconds())
	m.tpmResponses.WithLabelValues(name, fmt.Sprintf("0x%03x", rc)).Inc()
}

// Refused counts a request refused for reason, such as "policy" or "rate".
func (m *Metrics) Refused(reason string) {
	m.refusals.WithLabelValues(reason).Inc()
}

// ConnectionOpened and ConnectionClosed track open guest connections.
func (m *Metrics) ConnectionOpened() { m.connections.Inc() }

// ConnectionClosed counts a guest connection that closed.
func (m *Metrics) ConnectionClosed() { m.connections.Dec() }

// WatchQueue exports the depth of each peer's queue, read from depth at
// each scrape.
func (m *Metrics) WatchQueue(depth func() map[string]int) {
	m.Registry.MustRegister(&queueCollector{depth: depth})
}

// WatchTPM exports whether the last command reached the TPM, read from up
// at each scrape.
func (m *Metrics) WatchTPM(up func() bool) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vcomlink_tpm_up",
		Help: "1 while the last TPM command reached the TPM, else 0.",
	}, func() float64 {
		if up() {
			return 1
		}
		return 0
	}))
}

var queueDesc = prometheus.NewDesc(
	"vcomlink_queue_depth",
	"Requests waiting for the TPM, by peer.",
	[]string{"peer"}, nil,
)

// queueCollector reports the queue depth of the peers that have requests
// waiting. Peers with none are not reported, so the series of a VM that
// has gone away ends.
type queueCollector struct {
	depth func() map[string]int
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- queueDesc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	for peer, n := range c.depth() {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(n), peer)
	}
}

// commandNames are the TPM 2.0 commands (TPM_CC) that the agent sends.
var commandNames = map[tpm2.TPMCC]string{
	tpm2.TPMCCActivateCredential: "ActivateCredential",
	tpm2.TPMCCCertify:            "Certify",
	tpm2.TPMCCFlushContext:       "FlushContext",
	tpm2.TPMCCGetCapability:      "GetCapability",
	tpm2.TPMCCGetRandom:          "GetRandom",
	tpm2.TPMCCHash:               "Hash",
	tpm2.TPMCCHashSequenceStart:  "HashSequenceStart",
	tpm2.TPMCCNVRead:             "NV_Read",
	tpm2.TPMCCNVReadPublic:       "NV_ReadPublic",
	tpm2.TPMCCPolicySecret:       "PolicySecret",
	tpm2.TPMCCReadPublic:         "ReadPublic",
	tpm2.TPMCCSequenceComplete:   "SequenceComplete",
	tpm2.TPMCCSequenceUpdate:     "SequenceUpdate",
	tpm2.TPMCCSign:               "Sign",
	tpm2.TPMCCStartAuthSession:   "StartAuthSession",
	tpm2.TPMCCStartup:            "Startup",
}

// CommandName returns the name of a TPM command code, such as "Sign", or
// its hex value for a command the agent does not send.
func CommandName(command uint32) string {
	if name, ok := commandNames[tpm2.TPMCC(command)]; ok {
		return name
	}
	return fmt.Sprintf("0x%08x", command)
}
