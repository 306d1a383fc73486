package main

import (
	"strings"
	"testing"
)

// TestCommandHelp checks that --help of each guest and verifier command
// explains every flag, with its default where it has one.
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct {
		command string
		flags   []string
		details []string
	}{
		{"getpub", []string{"connect", "format", "timeout"}, []string{"(default vsock://2:2000)", "(default json)", "(default 1m0s)", "30s or 2m", "Exit status:"}},
		{"sign", []string{"in", "connect", "format", "timeout"}, []string{"65526 bytes", "DER SEQUENCE of r and s"}},
		{"readnv", []string{"connect", "format", "timeout"}, []string{"padding"}},
		{"activatecredparams", []string{"connect", "format", "timeout"}, []string{"raw is three TPM structures"}},
		{"activatecred", []string{"aik", "credential-file", "cred", "secret", "connect", "format", "timeout"}, []string{"(default 0x81000003)", "0xbadcc0de"}},
		{"certify", []string{"nonce", "connect", "format", "timeout"}, []string{"TPM2B_ATTEST"}},
		{"makecred", []string{"ek", "aik", "name", "secret", "out", "format"}, []string{"(default tpm2-tools)", "OUT.cred", "32 bytes"}},
		{"verify-sign", []string{"key", "in", "sig", "hash", "scheme", "digest"}, []string{"(default sha256)", "(default pkcs1)", "openssl dgst -verify"}},
		{"verify-certify", []string{"aik", "nonce", "in", "key-out"}, []string{"TPM_GENERATED_VALUE", "Exit status: 0 verified", "3 verified, but --key-out could not be written"}},
		{"verify-ekcert", []string{"ek", "cert", "ca"}, []string{"subjectAltName"}},
		{"demo", []string{"verbose"}, []string{"embedded TPM simulator", "Exit status: 0 every step verified"}},
	} {
		t.Run(tc.command, func(t *testing.T) {
			r := runCLI(t, nil, tc.command, "--help")
			if r.code != exitOK {
				t.Fatalf("exit status %d, want 0; stderr %q", r.code, r.stderr)
			}
			help := string(r.stdout)
			if !strings.HasPrefix(help, "Usage: vcomlink "+tc.command+" ") {
				t.Errorf("help does not begin with the usage line:\n%s", help)
			}

			lines := strings.Split(help, "\n")
			var listed []string
			for i, line := range lines {
				name, isFlag := strings.CutPrefix(line, "  --")
				if !isFlag {
					continue
				}
				name, _, _ = strings.Cut(name, " ")
				listed = append(listed, name)
				if i+1 >= len(lines) || len(strings.TrimSpace(lines[i+1])) < 20 {
					t.Errorf("--%s has no explanation", name)
				}
			}
			for _, flag := range tc.flags {
				if !strings.Contains(strings.Join(listed, " ")+" ", flag+" ") {
					t.Errorf("help lists flags %q, want --%s", listed, flag)
				}
			}
			if len(listed) != len(tc.flags) {
				t.Errorf("help lists %d flags %q, want %d", len(listed), listed, len(tc.flags))
			}
			// Compare with single spaces, so that wrapping does not matter.
			flat := strings.Join(strings.Fields(help), " ")
			for _, want := range tc.details {
				if !strings.Contains(flat, want) {
					t.Errorf("help does not mention %q", want)
				}
			}
		})
	}
}

// TestHelpCommand checks that vcomlink help COMMAND prints the help of
// vcomlink COMMAND --help to standard output, for every command.
func TestHelpCommand(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, nil, "help", c.name)
			if r.code != exitOK {
				t.Fatalf("exit status %d, want 0; stderr %q", r.code, r.stderr)
			}
			if len(r.stderr) != 0 {
				t.Errorf("stderr is not empty: %q", r.stderr)
			}
			if want := "Usage: vcomlink " + c.name; !strings.HasPrefix(string(r.stdout), want) {
				t.Errorf("help begins with %q, want %q", firstLine(r.stdout), want)
			}

			direct := runCLI(t, nil, c.name, "--help")
			if string(direct.stdout) != string(r.stdout) {
				t.Errorf("help %s differs from %s --help:\n%s\n---\n%s", c.name, c.name, r.stdout, direct.stdout)
			}
		})
	}
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

func TestVersionForms(t *testing.T) {
	want := string(mustRunCLI(t, nil, "version"))
	if !strings.HasPrefix(want, "vcomlink ") {
		t.Fatalf("version prints %q", want)
	}
	for _, flag := range []string{"--version", "-v"} {
		if got := string(mustRunCLI(t, nil, flag)); got != want {
			t.Errorf("vcomlink %s prints %q, want %q", flag, got, want)
		}
	}

	r := runCLI(t, nil, "version", "--help")
	if r.code != exitOK {
		t.Errorf("version --help: exit status %d, want 0; stderr %q", r.code, r.stderr)
	}
	if !strings.HasPrefix(string(r.stdout), "Usage: vcomlink version\n") {
		t.Errorf("version --help begins with %q", firstLine(r.stdout))
	}
	if strings.Contains(string(r.stdout), "Flags:") {
		t.Errorf("version --help lists flags, but version has none:\n%s", r.stdout)
	}
}

func TestHelpAndVersionUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help", "no-such-command"}, `vcomlink help: unknown command "no-such-command"`},
		{[]string{"help", "sign", "verify-sign"}, "vcomlink help: expected one COMMAND, got 2 arguments"},
		{[]string{"version", "extra"}, `vcomlink version: unexpected argument "extra"`},
		{[]string{"--version", "extra"}, `vcomlink version: unexpected argument "extra"`},
		{[]string{"demo", "extra"}, `vcomlink demo: unexpected argument "extra" (see vcomlink demo --help)`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCLI(t, nil, tc.args...)
			if r.code != exitUsage {
				t.Errorf("exit status %d, want %d", r.code, exitUsage)
			}
			if !strings.HasPrefix(string(r.stderr), tc.want) {
				t.Errorf("stderr %q does not begin with %q", r.stderr, tc.want)
			}
			if len(r.stdout) != 0 {
				t.Errorf("stdout is not empty: %q", r.stdout)
			}
		})
	}
}
