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
