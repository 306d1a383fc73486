package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/internal/swtpmtest"
	"github.com/vcomlink/vcomlink/verify"
)

// toolResult is the outcome of a program that this project did not write.
type toolResult struct {
	stdout, stderr string
	code           int
}

// runTool runs a program in dir with extra environment variables, after
// skipping the test, or failing it in CI, when the program is missing.
func runTool(t *testing.T, dir string, env []string, packageName, name string, args ...string) toolResult {
	t.Helper()
	swtpmtest.RequireProgram(t, name, packageName)
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("%s %q: %v", name, args, err)
	}
	return toolResult{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// mustRunTool runs a program and fails the test unless it exits with 0.
func mustRunTool(t *testing.T, dir string, env []string, packageName, name string, args ...string) string {
	t.Helper()
	r := runTool(t, dir, env, packageName, name, args...)
	if r.code != 0 {
		t.Fatalf("%s %q: exit status %d\n%s%s", name, args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// agentUnderTest is an agent that the tool checks run against: its
// --connect value and the CA that issued its EK certificate.
type agentUnderTest struct {
	connect string
	ca      *x509.Certificate
}

func TestToolsSimulator(t *testing.T) {
	a := startTestAgent(t)
	checkWithTools(t, agentUnderTest{connect: a.connect, ca: a.p.CA.Certificate})
}

func TestToolsSWTPM(t *testing.T) {
	sw := swtpmtest.Start(t)
	p := startServe(t, "--tpm", "unix://"+sw.SocketPath)
	checkWithTools(t, agentUnderTest{connect: "unix://" + p.socket, ca: sw.CA})
}

func checkWithTools(t *testing.T, a agentUnderTest) {
	t.Run("openssl dgst", func(t *testing.T) { checkOpenSSLSignatures(t, a) })
	t.Run("openssl verify", func(t *testing.T) { checkOpenSSLEKCert(t, a) })
	t.Run("tpm2_makecredential", func(t *testing.T) { checkTPM2MakeCredential(t, a) })
	t.Run("tpm2_print TPMS_ATTEST", func(t *testing.T) { checkTPM2PrintAttest(t, a) })
	t.Run("tpm2_print TPMT_PUBLIC", func(t *testing.T) { checkTPM2PrintPublic(t, a) })
}

// checkOpenSSLSignatures has OpenSSL verify signatures of sign --format raw
// with the keys of getpub --format pem.
func checkOpenSSLSignatures(t *testing.T, a agentUnderTest) {
	dir := t.TempDir()
	message := []byte("message that OpenSSL hashes")
	msg := writeTemp(t, dir, "msg", message)
	other := writeTemp(t, dir, "other", []byte("another message"))
	digest := sha256.Sum256(message)
	msgDigest := writeTemp(t, dir, "msg.sha256", digest[:])

	for _, tc := range []struct {
		name   string
		handle string
		in     string // what the guest signs: the message, or its digest
	}{
		{"RSA restricted", "0x81000003", msg},
		{"ECDSA unrestricted", "0x81000005", msgDigest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := writeTemp(t, dir, tc.handle+".pem",
				mustRunCLI(t, nil, "getpub", tc.handle, "--format", "pem", "--connect", a.connect))
			sig := writeTemp(t, dir, tc.handle+".sig",
				mustRunCLI(t, nil, "sign", tc.handle, "--in", tc.in, "--format", "raw", "--connect", a.connect))

			r := runTool(t, dir, nil, "openssl", "openssl", "dgst", "-sha256", "-verify", key, "-signature", sig, msg)
			if r.code != 0 || strings.TrimSpace(r.stdout) != "Verified OK" {
				t.Errorf("openssl dgst -verify: exit status %d, output %q %q; want 0 and Verified OK", r.code, r.stdout, r.stderr)
			}
			r = runTool(t, dir, nil, "openssl", "openssl", "dgst", "-sha256", "-verify", key, "-signature", sig, other)
			if r.code == 0 || !strings.Contains(r.stdout, "Verification failure") {
				t.Errorf("openssl dgst -verify of another message: exit status %d, output %q; want a failure", r.code, r.stdout)
			}
		})
	}
}

// checkOpenSSLEKCert has OpenSSL verify the EK certificate of readnv
// --format pem against the CA that issued it, and against another CA.
func checkOpenSSLEKCert(t *testing.T, a agentUnderTest) {
	dir := t.TempDir()
	cert := writeTemp(t, dir, "ek-cert.pem", mustRunCLI(t, nil, "readnv", "0x01c00002", "--format", "pem", "--connect", a.connect))
	ca := writeTemp(t, dir, "ca.pem", pemCertificate(a.ca))
	otherCA := writeTemp(t, dir, "other-ca.pem", pemCertificate(selfSignedCA(t, a.ca.Subject)))

	r := runTool(t, dir, nil, "openssl", "openssl", "verify", "-CAfile", ca, cert)
	if want := cert + ": OK"; r.code != 0 || strings.TrimSpace(r.stdout) != want {
		t.Errorf("openssl verify: exit status %d, output %q %q; want 0 and %q", r.code, r.stdout, r.stderr, want)
	}
	r = runTool(t, dir, nil, "openssl", "openssl", "verify", "-CAfile", otherCA, cert)
	if r.code == 0 {
		t.Errorf("openssl verify against another CA: exit status 0, output %q", r.stdout)
	}

	// The EK certificate (CA:FALSE) is no trust anchor for itself, for
	// OpenSSL and for verify-ekcert alike.
	r = runTool(t, dir, nil, "openssl", "openssl", "verify", "-CAfile", cert, cert)
	if r.code == 0 {
		t.Errorf("openssl verify with the EK certificate as CA: exit status 0, output %q", r.stdout)
	}
	ek := writeTemp(t, dir, "ek.pem", mustRunCLI(t, nil, "getpub", "0x81000001", "--format", "pem", "--connect", a.connect))
	ours := runCLI(t, nil, "verify-ekcert", "--ek", ek, "--cert", cert, "--ca", cert)
	if ours.code != exitFailure {
		t.Errorf("verify-ekcert with the EK certificate as CA: exit status %d, want %d; stdout %q", ours.code, exitFailure, ours.stdout)
	}
}

// checkTPM2MakeCredential has tpm2_makecredential make credentials for the
// agent's EK and the AIK's Name, which activatecred --credential-file then
// recovers.
func checkTPM2MakeCredential(t *testing.T, a agentUnderTest) {
	dir := t.TempDir()
	ekPub := mustRunCLI(t, nil, "getpub", "0x81000001", "--format", "raw", "--connect", a.connect)
	ekTPM2B := writeTemp(t, dir, "ek.tpm2b", appendTPM2B(nil, ekPub))
	ekCert := writeTemp(t, dir, "ek-cert.pem", mustRunCLI(t, nil, "readnv", "0x01c00002", "--format", "pem", "--connect", a.connect))
	ekKey := writeTemp(t, dir, "ek.pem", []byte(mustRunTool(t, dir, nil, "openssl", "openssl", "x509", "-in", ekCert, "-pubkey", "-noout")))

	params := decodeJSON(t, mustRunCLI(t, nil, "activatecredparams", "0x81000003", "--connect", a.connect))
	// tpm2_makecredential of tpm2-tools 5.4 takes the Name in hex on the
	// command line, without the size prefix of a TPM2B_NAME.
	name := hex.EncodeToString(hexField(t, params, "aik_name")[2:])

	for _, tc := range []struct {
		name string
		ek   []string
	}{
		{"TPM2B_PUBLIC", []string{"-u", ekTPM2B}},
		{"PEM from the EK certificate", []string{"-G", "rsa", "-u", ekKey}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret := make([]byte, 32)
			rand.Read(secret)
			secretFile := writeTemp(t, dir, "secret", secret)
			blob := filepath.Join(dir, "cred.blob")
			args := append([]string{"-Q", "-T", "none", "-s", secretFile, "-n", name, "-o", blob}, tc.ek...)
			mustRunTool(t, dir, nil, "tpm2-tools", "tpm2_makecredential", args...)

			recovered := mustRunCLI(t, nil, "activatecred", "--aik", "0x81000003", "--credential-file", blob,
				"--format", "raw", "--connect", a.connect)
			if !bytes.Equal(recovered, secret) {
				t.Errorf("activatecred recovered %x, want %x", recovered, secret)
			}
		})
	}
}

// parseToolOutput reads the YAML-like "key: value" lines that tpm2_print
// writes. A nested key is joined to its parent with a dot, as in
// "clockInfo.clock".
func parseToolOutput(out string) map[string]string {
	fields := make(map[string]string)
	parent := ""
	scanner := bufio.NewScanner(strings.NewReader(out))
	for scanner.Scan() {
		line := scanner.Text()
		key, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		if strings.HasPrefix(line, "  ") {
			key = parent + "." + key
		} else if value == "" {
			parent = key
		}
		fields[key] = value
	}
	return fields
}

// checkTPM2PrintAttest has tpm2_print parse the TPMS_ATTEST of certify,
// and compares the fields it prints with the attestation and the nonce.
func checkTPM2PrintAttest(t *testing.T, a agentUnderTest) {
	dir := t.TempDir()
	nonce := "5eed0f0ce1c0ffee"
	certified := decodeJSON(t, mustRunCLI(t, nil, "certify", "0x81000005", "--nonce", nonce, "--connect", a.connect))
	attestBytes := hexField(t, certified, "attest")
	attest, err := verify.ParseAttest(attestBytes)
	if err != nil {
		t.Fatal(err)
	}
	file := writeTemp(t, dir, "attest", attestBytes)

	r := runTool(t, dir, nil, "tpm2-tools", "tpm2_print", "-t", "TPMS_ATTEST", file)
	// NOTE: tpm2_print of tpm2-tools 5.4 prints the header of a
	// TPMS_ATTEST and then fails on a TPM_ST_ATTEST_CERTIFY, also for one
	// that tpm2_certify made, so only the header is compared.
	if r.code != 0 && !strings.Contains(r.stderr, "Cannot print unsupported type 0x8017") {
		t.Fatalf("tpm2_print: exit status %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// NOTE: tpm2_print of tpm2-tools 5.4 prints firmwareVersion with its
	// bytes reversed from the TPM's big-endian order, so it is not compared.
	fields := parseToolOutput(r.stdout)
	for key, want := range map[string]string{
		"magic":                  "ff544347",
		"type":                   "8017",
		"extraData":              nonce,
		"qualifiedSigner":        hex.EncodeToString(attest.QualifiedSigner.Buffer),
		"clockInfo.clock":        strconv.FormatUint(attest.ClockInfo.Clock, 10),
		"clockInfo.resetCount":   strconv.FormatUint(uint64(attest.ClockInfo.ResetCount), 10),
		"clockInfo.restartCount": strconv.FormatUint(uint64(attest.ClockInfo.RestartCount), 10),
	} {
		if got, ok := fields[key]; !ok || got != want {
			t.Errorf("tpm2_print %s: %q, want %q\n%s", key, got, want, r.stdout)
		}
	}
}

// checkTPM2PrintPublic has tpm2_print parse the TPMT_PUBLIC of getpub
// --format raw, and compares the fields it prints with the keys.
func checkTPM2PrintPublic(t *testing.T, a agentUnderTest) {
	dir := t.TempDir()
	for _, tc := range []struct {
		handle string
		want   map[string]string
	}{
		{"0x81000003", map[string]string{"type.value": "rsa", "bits": "2048", "scheme.value": "rsassa", "scheme-halg.value": "sha256"}},
		{"0x81000001", map[string]string{"type.value": "rsa", "bits": "2048", "sym-alg.value": "aes", "sym-keybits": "128"}},
		{"0x81000005", map[string]string{"type.value": "ecc", "curve-id.raw": "0x3", "scheme.value": "null"}},
	} {
		t.Run(tc.handle, func(t *testing.T) {
			getpub := decodeJSON(t, mustRunCLI(t, nil, "getpub", tc.handle, "--connect", a.connect))
			raw := hexField(t, getpub, "public")
			public, err := verify.ParsePublic(raw)
			if err != nil {
				t.Fatal(err)
			}
			file := writeTemp(t, dir, tc.handle+".pub", raw)
			out := mustRunTool(t, dir, nil, "tpm2-tools", "tpm2_print", "-t", "TPMT_PUBLIC", file)
			fields := parseToolOutput(out)

			want := map[string]string{
				"name-alg.value":   "sha256",
				"attributes.raw":   fmt.Sprintf("0x%x", uint32(getpub["attributes"].(float64))),
				"type.raw":         fmt.Sprintf("0x%x", uint32(getpub["algorithm"].(float64))),
				"attributes.value": attributeNames(public.ObjectAttributes),
			}
			key, err := verify.PublicKey(public)
			if err != nil {
				t.Fatal(err)
			}
			switch k := key.(type) {
			case *rsa.PublicKey:
				want["rsa"] = hex.EncodeToString(k.N.Bytes())
				want["exponent"] = strconv.Itoa(k.E)
			case *ecdsa.PublicKey:
				point, err := k.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				want["x"] = hex.EncodeToString(point[1:33])
				want["y"] = hex.EncodeToString(point[33:])
			}
			for k, v := range tc.want {
				want[k] = v
			}

			for field, value := range want {
				if got, ok := fields[field]; !ok || got != value {
					t.Errorf("tpm2_print %s: %q, want %q\n%s", field, got, value, out)
				}
			}
		})
	}
}

// attributeNames lists the TPMA_OBJECT bits that are set, in the order and
// with the names that tpm2_print uses.
func attributeNames(a tpm2.TPMAObject) string {
	var names []string
	for _, bit := range []struct {
		set  bool
		name string
	}{
		{a.FixedTPM, "fixedtpm"}, {a.STClear, "stclear"}, {a.FixedParent, "fixedparent"},
		{a.SensitiveDataOrigin, "sensitivedataorigin"}, {a.UserWithAuth, "userwithauth"},
		{a.AdminWithPolicy, "adminwithpolicy"}, {a.NoDA, "noda"},
		{a.EncryptedDuplication, "encryptedduplication"}, {a.Restricted, "restricted"},
		{a.Decrypt, "decrypt"}, {a.SignEncrypt, "sign"},
	} {
		if bit.set {
			names = append(names, bit.name)
		}
	}
	return strings.Join(names, "|")
}

// TestTPM2ActivateCredential checks that tpm2_activatecredential recovers
// the secret of a credential that makecred wrote in the tpm2-tools format.
// swtpm serves one connection at a time, so no agent runs here.
func TestTPM2ActivateCredential(t *testing.T) {
	sw := swtpmtest.Start(t)
	env := []string{"TPM2TOOLS_TCTI=swtpm:path=" + sw.SocketPath}
	dir := t.TempDir()
	tool := func(name string, args ...string) string {
		t.Helper()
		return mustRunTool(t, dir, env, "tpm2-tools", name, args...)
	}

	tool("tpm2_readpublic", "-c", "0x81000001", "-o", "ek.tpm2b")
	tool("tpm2_readpublic", "-c", "0x81000003", "-f", "tpmt", "-o", "aik.tpmt")
	ek := filepath.Join(dir, "ek.tpm2b")
	aik := filepath.Join(dir, "aik.tpmt")
	secret := make([]byte, 32)
	rand.Read(secret)
	writeTemp(t, dir, "secret", secret)
	for _, args := range [][]string{
		{"--ek", ek, "--aik", aik},
		{"--ek", ek, "--name", "000b" + hex.EncodeToString(aikNameDigest(t, aik))},
	} {
		args = append([]string{"makecred", "--secret", filepath.Join(dir, "secret"), "--out", filepath.Join(dir, "cred.blob")}, args...)
		mustRunCLI(t, nil, args...)

		tool("tpm2_startauthsession", "--policy-session", "-S", "session.ctx")
		tool("tpm2_policysecret", "-S", "session.ctx", "-c", "e")
		tool("tpm2_activatecredential", "-c", "0x81000003", "-C", "0x81000001",
			"-i", "cred.blob", "-o", "recovered", "-P", "session:session.ctx")
		tool("tpm2_flushcontext", "session.ctx")

		if recovered := mustRead(t, filepath.Join(dir, "recovered")); !bytes.Equal(recovered, secret) {
			t.Errorf("makecred %q: tpm2_activatecredential recovered %x, want %x", args, recovered, secret)
		}
	}
}

// aikNameDigest returns the SHA-256 digest in the Name of a TPMT_PUBLIC.
func aikNameDigest(t *testing.T, path string) []byte {
	t.Helper()
	public, err := verify.ParsePublic(mustRead(t, path))
	if err != nil {
		t.Fatal(err)
	}
	name, err := verify.Name(public)
	if err != nil {
		t.Fatal(err)
	}
	return name[2:]
}
