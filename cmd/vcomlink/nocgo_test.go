package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBuildWithoutCgo builds vcomlink with CGO_ENABLED=0, which drops only
// the embedded simulator, and checks that the binary says so and how to get
// one that has it.
func TestBuildWithoutCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	binary := filepath.Join(t.TempDir(), "vcomlink")
	build := exec.Command(goTool, "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}

	info, err := exec.Command(goTool, "version", "-m", binary).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(info), "CGO_ENABLED=0") {
		t.Errorf("go version -m does not record CGO_ENABLED=0:\n%s", info)
	}

	version, err := exec.Command(binary, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(version), "without the TPM simulator") {
		t.Errorf("version %q does not say the simulator is missing", version)
	}

	listen := "unix://" + filepath.Join(shortTempDir(t), "v.sock")
	check := exec.Command(binary, "serve", "--tpm", "simulator", "--listen", listen, "--check")
	if out, err := check.CombinedOutput(); check.ProcessState.ExitCode() != exitUsage {
		t.Errorf("serve --check --tpm simulator without the simulator: %v, want exit status %d\n%s", err, exitUsage, out)
	}
	for _, args := range [][]string{
		{"serve", "--tpm", "simulator", "--listen", listen},
		{"demo"},
	} {
		out, err := exec.Command(binary, args...).CombinedOutput()
		if err == nil {
			t.Errorf("vcomlink %q succeeded without the simulator", args)
			continue
		}
		if !strings.Contains(string(out), "CGO_ENABLED=1 go build ./cmd/vcomlink") {
			t.Errorf("vcomlink %q: output %q does not say how to build a binary with the simulator", args, out)
		}
	}
}
