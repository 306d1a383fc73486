package swtpmtest

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// RequireEnv is the environment variable that turns a skip for a missing
// program into a test failure when set to 1, so that CI cannot pass without
// running the swtpm tests.
const RequireEnv = "VCOMLINK_REQUIRE_SWTPM"

// program is a program that the helpers run and its Debian package.
type program struct{ name, packageName string }

// swtpmProgram is the program that StartCleared runs.
var swtpmProgram = program{"swtpm", "swtpm"}

// provisionPrograms are the programs that Start and scripts/swtpm-provision
// run.
var provisionPrograms = []program{
	{"bash", "bash"},
	{"swtpm", "swtpm"},
	{"swtpm_ioctl", "swtpm-tools"},
	{"swtpm_cert", "swtpm-tools"},
	{"tpm2_createek", "tpm2-tools"},
	{"tpm2_createprimary", "tpm2-tools"},
	{"tpm2_evictcontrol", "tpm2-tools"},
	{"tpm2_flushcontext", "tpm2-tools"},
	{"tpm2_getcap", "tpm2-tools"},
	{"tpm2_nvdefine", "tpm2-tools"},
	{"tpm2_nvwrite", "tpm2-tools"},
	{"tpm2_nvwritelock", "tpm2-tools"},
	{"tpm2_readpublic", "tpm2-tools"},
	{"tpm2_shutdown", "tpm2-tools"},
	{"openssl", "openssl"},
}

// requirePrograms skips the test, or fails it when RequireEnv is 1, unless
// every one of programs is on PATH.
func requirePrograms(t testing.TB, programs ...program) {
	t.Helper()

	var missing, packages []string
	for _, required := range programs {
		if _, err := exec.LookPath(required.name); err != nil {
			missing = append(missing, required.name)
			if !slices.Contains(packages, required.packageName) {
				packages = append(packages, required.packageName)
			}
		}
	}
	if len(missing) == 0 {
		return
	}

	message := fmt.Sprintf("swtpm tests need %s, which are not on PATH; install them with: apt-get install %s",
		strings.Join(missing, ", "), strings.Join(packages, " "))
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (%s=1 turns this skip into a failure)", message, RequireEnv)
	}
	t.Skip(message)
}

// RequireProgram skips the test, or fails it when RequireEnv is 1, unless
// the program name from the Debian package packageName is on PATH. Tests
// that check results with tools such as openssl and tpm2-tools call it.
func RequireProgram(t testing.TB, name, packageName string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}

	message := fmt.Sprintf("%s needs %s, which is not on PATH; install it with: apt-get install %s",
		t.Name(), name, packageName)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (%s=1 turns this skip into a failure)", message, RequireEnv)
	}
	t.Skip(message)
}
