package swtpmtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// modulePath is the module whose root holds scripts/swtpm-provision.
const modulePath = "github.com/vcomlink/vcomlink"

// provisionTimeout bounds one run of scripts/swtpm-provision, which took
// 1.4 seconds on a 2-core machine.
const provisionTimeout = 2 * time.Minute

// provisionedState caches the files of the state that
// scripts/swtpm-provision made, by file name, for the life of the test
// binary. Each SWTPM gets a copy, so changes made by one test never reach
// another. Keeping the files in memory leaves no directory behind.
var provisionedState struct {
	sync.Mutex
	files map[string][]byte
}

// provisionedFiles returns the files of a provisioned swtpm state. The
// first call in a test binary runs scripts/swtpm-provision, and a failed
// run is tried again on the next call.
func provisionedFiles(t testing.TB) map[string][]byte {
	t.Helper()

	provisionedState.Lock()
	defer provisionedState.Unlock()
	if provisionedState.files != nil {
		return provisionedState.files
	}

	script, err := findScript()
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "provisioned")
	ctx, cancel := context.WithTimeout(context.Background(), provisionTimeout)
	defer cancel()
	output, err := exec.CommandContext(ctx, "bash", script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s failed: %v\n%s", script, dir, err, output)
	}

	files, err := readStateFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	provisionedState.files = files
	return files
}

// readStateFiles reads the regular files of a state directory, leaving out
// the .lock file of the swtpm that wrote it.
func readStateFiles(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read provisioned swtpm state: %w", err)
	}

	files := make(map[string][]byte)
	for _, entry := range entries {
		if !entry.Type().IsRegular() || entry.Name() == ".lock" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, entry.Name()))
		if err != nil {
			return nil, fmt.Errorf("read provisioned swtpm state: %w", err)
		}
		files[entry.Name()] = data
	}
	return files, nil
}

// writeStateFiles writes files into dir, readable by the owner only,
// because they include the CA's private key.
func writeStateFiles(dir string, files map[string][]byte) error {
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("copy provisioned swtpm state: %w", err)
		}
	}
	return nil
}

// findScript returns the path of scripts/swtpm-provision, searching from
// the working directory, which go test sets to the package directory, up
// to the root of the module.
func findScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find scripts/swtpm-provision: %w", err)
	}

	for {
		if isModuleRoot(dir) {
			return filepath.Join(dir, "scripts", "swtpm-provision"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find scripts/swtpm-provision: no go.mod of " + modulePath +
				" in the working directory or above it; run the test inside the repository")
		}
		dir = parent
	}
}

// isModuleRoot reports whether dir has the go.mod of modulePath.
func isModuleRoot(dir string) bool {
	file, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer file.Close()

	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		if fields := strings.Fields(scanner.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == modulePath
		}
	}
	return false
}
