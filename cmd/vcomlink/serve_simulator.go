package main

import (
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/vcomlink/vcomlink/tpm/backend"
)

// writeSimulatorCA writes the certificate of the CA that issued the
// simulator's EK certificate into a directory of its own, so that a
// verifier can check the EK certificate, and returns a function that
// removes it.
func writeSimulatorCA(opened *backend.Opened, log *slog.Logger) (remove func(), err error) {
	dir, err := os.MkdirTemp("", "vcomlink-simulator-")
	if err != nil {
		return nil, fmt.Errorf("write the simulator's CA certificate: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	path := filepath.Join(dir, "ca.pem")
	block := &pem.Block{Type: "CERTIFICATE", Bytes: opened.Provisioned.CA.Certificate.Raw}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o644); err != nil {
		remove()
		return nil, fmt.Errorf("write the simulator's CA certificate: %w", err)
	}
	log.Warn("serving the embedded TPM simulator: its keys are not a real TPM's and vanish when the agent stops, and it has no SRK", "ek_cert_ca", path)
	return remove, nil
}
