package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// verifierFiles are the files that a guest hands a verifier, written from
// the output of the guest commands.
type verifierFiles struct {
	dir                   string
	ekPub, ekTPM2B, ekPEM string // the EK as TPMT_PUBLIC, TPM2B_PUBLIC and PEM
	aikPub, aikPEM        string
	ecdhPub, ecdhPEM      string
	ekCert, ekCertDER     string
	ca                    string
}

func writeVerifierFiles(t *testing.T, a *testAgent) *verifierFiles {
	t.Helper()
	dir := t.TempDir()
	get := func(args ...string) []byte {
		return mustRunCLI(t, nil, append(args, "--connect", a.connect)...)
	}
	ekPub := get("getpub", "0x81000001", "--format", "raw")

	return &verifierFiles{
		dir:       dir,
		ekPub:     writeTemp(t, dir, "ek.pub", ekPub),
		ekTPM2B:   writeTemp(t, dir, "ek.tpm2b", appendTPM2B(nil, ekPub)),
		ekPEM:     writeTemp(t, dir, "ek.pem", get("getpub", "0x81000001", "--format", "pem")),
		aikPub:    writeTemp(t, dir, "aik.pub", get("getpub", "0x81000003", "--format", "raw")),
		aikPEM:    writeTemp(t, dir, "aik.pem", get("getpub", "0x81000003", "--format", "pem")),
		ecdhPub:   writeTemp(t, dir, "ecdh.pub", get("getpub", "0x81000005", "--format", "raw")),
		ecdhPEM:   writeTemp(t, dir, "ecdh.pem", get("getpub", "0x81000005", "--format", "pem")),
		ekCert:    writeTemp(t, dir, "ek-cert.pem", get("readnv", "0x01c00002", "--format", "pem")),
		ekCertDER: writeTemp(t, dir, "ek-cert.nv", get("readnv", "0x01c00002", "--format", "raw")),
		ca:        writeTemp(t, dir, "ca.pem", pemCertificate(a.p.CA.Certificate)),
	}
}

func pemCertificate(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// checkResult fails the test unless r has exit status code and its output
// (stdout for 0, stderr otherwise) is one line that contains want.
func checkResult(t *testing.T, r cliResult, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d; stdout %q, stderr %q", r.code, code, r.stdout, r.stderr)
	}
	out := string(r.stderr)
	if code == exitOK {
		out = string(r.stdout)
	}
	if !strings.Contains(out, want) {
		t.Errorf("output %q does not contain %q", out, want)
	}
	if lines := strings.Count(out, "\n"); lines != 1 {
		t.Errorf("output has %d lines, want 1: %q", lines, out)
	}
}

func TestVerifyEKCert(t *testing.T) {
	a := startTestAgent(t)
	f := writeVerifierFiles(t, a)
	otherCAFile := writeTemp(t, f.dir, "other-ca.pem", pemCertificate(selfSignedCA(t, a.p.CA.Certificate.Subject)))
	chain := writeTemp(t, f.dir, "chain.pem", append(mustRead(t, f.ekCert), mustRead(t, f.ca)...))
	report := writeTemp(t, f.dir, "report.txt", []byte("the guest's report\n"))

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"chain to CA", []string{"--ek", f.ekPub, "--cert", f.ekCert, "--ca", f.ca}, exitOK, "chains to a CA of"},
		{"EK as TPM2B_PUBLIC", []string{"--ek", f.ekTPM2B, "--cert", f.ekCert, "--ca", f.ca}, exitOK, "verified"},
		{"EK as PEM", []string{"--ek", f.ekPEM, "--cert", f.ekCert, "--ca", f.ca}, exitOK, "verified"},
		{"NV data with padding", []string{"--ek", f.ekPub, "--cert", f.ekCertDER, "--ca", f.ca}, exitOK, "verified"},
		{"CA as intermediate", []string{"--ek", f.ekPub, "--cert", chain, "--ca", f.ca}, exitOK, "verified"},
		{"without CA", []string{"--ek", f.ekPub, "--cert", f.ekCert}, exitOK, "Its chain was not checked"},
		{"other CA", []string{"--ek", f.ekPub, "--cert", f.ekCert, "--ca", otherCAFile}, exitFailure, "verification failed: EK certificate: chain"},
		{"EK certificate as CA", []string{"--ek", f.ekPub, "--cert", f.ekCert, "--ca", f.ekCert}, exitFailure, "cannot be its own trust anchor"},
		{"EK certificate and CA as CAs", []string{"--ek", f.ekPub, "--cert", f.ekCert, "--ca", chain}, exitFailure, "cannot be its own trust anchor"},
		{"other EK", []string{"--ek", f.ecdhPEM, "--cert", f.ekCert}, exitFailure, "public key does not match the EK"},
		{"key that is not the EK", []string{"--ek", f.aikPub, "--cert", f.ekCert}, exitFailure, "public key does not match the EK"},
		{"missing --ek", []string{"--cert", f.ekCert}, exitUsage, "missing --ek FILE"},
		{"missing --cert", []string{"--ek", f.ekPub}, exitUsage, "missing --cert FILE"},
		{"cert is a key", []string{"--ek", f.ekPub, "--cert", f.aikPub}, exitUsage, "aik.pub is not a PEM or DER certificate"},
		{"cert is text", []string{"--ek", f.ekPub, "--cert", report}, exitUsage,
			"--cert: " + report + " is not a PEM or DER certificate: data begins with 0x74, not a DER SEQUENCE (0x30)"},
		{"CA is text", []string{"--ek", f.ekPub, "--cert", f.ekCert, "--ca", report}, exitUsage, "--ca: " + report + " is not a PEM or DER certificate"},
		{"CA is a key", []string{"--ek", f.ekPub, "--cert", f.ekCert, "--ca", f.aikPEM}, exitUsage, `contains a PEM block "PUBLIC KEY"`},
		{"EK is a certificate chain file", []string{"--ek", f.ekCertDER, "--cert", f.ekCert}, exitUsage, "is not a public key file: expected a TPMT_PUBLIC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkResult(t, runCLI(t, nil, append([]string{"verify-ekcert"}, tc.args...)...), tc.code, tc.want)
		})
	}
}

// selfSignedCA returns a CA certificate with subject, of a new P-256 key.
func selfSignedCA(t *testing.T, subject pkix.Name) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               subject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMakeCredActivates(t *testing.T) {
	a := startTestAgent(t)
	f := writeVerifierFiles(t, a)
	secret := writeTemp(t, f.dir, "secret", []byte("0123456789abcdef0123456789abcdef"))
	name := hex.EncodeToString(tpm2.Marshal(a.p.AIK.Name))
	bareName := hex.EncodeToString(a.p.AIK.Name.Buffer)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"AIK public area", []string{"--ek", f.ekPub, "--aik", f.aikPub}},
		{"Name with prefix", []string{"--ek", f.ekPub, "--name", name}},
		{"Name without prefix", []string{"--ek", f.ekTPM2B, "--name", "0x" + bareName}},
		{"EK from certificate", []string{"--ek", f.ekCert, "--aik", f.aikPub}},
		{"EK as PEM key", []string{"--ek", f.ekPEM, "--aik", f.aikPub}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "cred")
			args := append([]string{"makecred", "--secret", secret, "--out", out}, tc.args...)
			checkResult(t, runCLI(t, nil, args...), exitOK, "credential for the Name "+bareName)
			recovered := mustRunCLI(t, nil, "activatecred", "--credential-file", out, "--format", "raw", "--connect", a.connect)
			if !bytes.Equal(recovered, mustRead(t, secret)) {
				t.Errorf("recovered %q, want the secret", recovered)
			}

			args = append(args, "--format", "wire")
			checkResult(t, runCLI(t, nil, args...), exitOK, "wrote "+out+".cred and "+out+".secret")
			recovered = mustRunCLI(t, nil, "activatecred", "--cred", out+".cred", "--secret", out+".secret",
				"--format", "raw", "--connect", a.connect)
			if !bytes.Equal(recovered, mustRead(t, secret)) {
				t.Errorf("wire: recovered %q, want the secret", recovered)
			}
		})
	}
}

func TestMakeCredStandardOutput(t *testing.T) {
	a := startTestAgent(t)
	f := writeVerifierFiles(t, a)
	secret := writeTemp(t, f.dir, "secret", []byte("0123456789abcdef0123456789abcdef"))
	bareName := hex.EncodeToString(a.p.AIK.Name.Buffer)

	r := runCLI(t, nil, "makecred", "--ek", f.ekPub, "--aik", f.aikPub, "--secret", secret, "--out", "-")
	if r.code != exitOK {
		t.Fatalf("exit status %d, want 0; stderr %q", r.code, r.stderr)
	}
	if want := "wrote standard output: credential for the Name " + bareName + "\n"; string(r.stderr) != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	if _, err := os.Stat("-"); err == nil {
		os.Remove("-")
		t.Error("makecred --out - created a file named -")
	}

	recovered := mustRunCLI(t, r.stdout, "activatecred", "--credential-file", "-", "--format", "raw", "--connect", a.connect)
	if !bytes.Equal(recovered, mustRead(t, secret)) {
		t.Errorf("recovered %q from standard output, want the secret", recovered)
	}
}

func TestMakeCredRejects(t *testing.T) {
	a := startTestAgent(t)
	f := writeVerifierFiles(t, a)
	secret := writeTemp(t, f.dir, "secret", []byte("secret"))
	tooLong := writeTemp(t, f.dir, "long", bytes.Repeat([]byte{1}, 33))
	empty := writeTemp(t, f.dir, "empty", nil)
	out := filepath.Join(f.dir, "cred")
	name := hex.EncodeToString(tpm2.Marshal(a.p.AIK.Name))

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing --ek", []string{"--aik", f.aikPub, "--secret", secret, "--out", out}, "missing --ek FILE"},
		{"missing key", []string{"--ek", f.ekPub, "--secret", secret, "--out", out}, "give --aik FILE or --name HEX"},
		{"both --aik and --name", []string{"--ek", f.ekPub, "--aik", f.aikPub, "--name", name, "--secret", secret, "--out", out}, "not both"},
		{"missing --secret", []string{"--ek", f.ekPub, "--aik", f.aikPub, "--out", out}, "missing --secret FILE"},
		{"missing --out", []string{"--ek", f.ekPub, "--aik", f.aikPub, "--secret", secret}, "missing --out FILE"},
		{"secret too long", []string{"--ek", f.ekPub, "--aik", f.aikPub, "--secret", tooLong, "--out", out}, "secret is 33 bytes"},
		{"secret empty", []string{"--ek", f.ekPub, "--aik", f.aikPub, "--secret", empty, "--out", out}, "secret is empty"},
		{"EK that is a signing key", []string{"--ek", f.aikPub, "--aik", f.aikPub, "--secret", secret, "--out", out}, "EK is not a restricted decryption key"},
		{"EK file missing", []string{"--ek", f.dir + "/none", "--aik", f.aikPub, "--secret", secret, "--out", out}, "no such file or directory"},
		{"AIK as PEM", []string{"--ek", f.ekPub, "--aik", f.aikPEM, "--secret", secret, "--out", out}, "no TPM attributes"},
		{"Name not hex", []string{"--ek", f.ekPub, "--name", "000bzz", "--secret", secret, "--out", out}, `invalid --name "000bzz"`},
		{"Name too short", []string{"--ek", f.ekPub, "--name", name[:len(name)-2], "--secret", secret, "--out", out},
			"it begins with the size of a TPM2B_NAME, 34 bytes, but 33 bytes follow: the Name is truncated or has extra bytes (a SHA256 Name is 34 bytes)"},
		{"Name cut after nameAlg", []string{"--ek", f.ekPub, "--name", "0022000b1234", "--secret", secret, "--out", out},
			"invalid --name 0022000b1234: it begins with the size of a TPM2B_NAME, 34 bytes, but 4 bytes follow"},
		{"bare Name too short", []string{"--ek", f.ekPub, "--name", "000b1234", "--secret", secret, "--out", out},
			"the Name has a 2-byte digest, but its nameAlg SHA256 produces 32 bytes"},
		{"TPM2B_NAME with short digest", []string{"--ek", f.ekPub, "--name", "0004000b1234", "--secret", secret, "--out", out},
			"the TPM2B_NAME has a 2-byte digest, but its nameAlg SHA256 produces 32 bytes"},
		{"Name of one byte", []string{"--ek", f.ekPub, "--name", "0b", "--secret", secret, "--out", out}, "invalid --name 0b: it is too short for a Name"},
		{"Name of unknown nameAlg", []string{"--ek", f.ekPub, "--name", "12345678", "--secret", secret, "--out", out},
			"it begins with neither a nameAlg nor a size and a nameAlg"},
		{"unknown format", []string{"--ek", f.ekPub, "--aik", f.aikPub, "--secret", secret, "--out", out, "--format", "pem"}, "use tpm2-tools or wire"},
		{"wire to standard output", []string{"--ek", f.ekPub, "--aik", f.aikPub, "--secret", secret, "--out", "-", "--format", "wire"},
			"--out - (standard output) takes one file, but --format wire writes two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkResult(t, runCLI(t, nil, append([]string{"makecred"}, tc.args...)...), exitUsage, tc.want)
		})
	}
}

func TestVerifySignCases(t *testing.T) {
	a := startTestAgent(t)
	f := writeVerifierFiles(t, a)
	dir := f.dir
	c := a.connect

	message := []byte("message to sign")
	msg := writeTemp(t, dir, "msg", message)
	digest := sha256.Sum256(message)
	msgDigest := writeTemp(t, dir, "msg.sha256", digest[:])
	aikRaw := writeTemp(t, dir, "aik.sig", mustRunCLI(t, nil, "sign", "0x81000003", "--in", msg, "--format", "raw", "--connect", c))
	aikJSON := writeTemp(t, dir, "aik.json", mustRunCLI(t, nil, "sign", "0x81000003", "--in", msg, "--connect", c))
	ecdhRaw := writeTemp(t, dir, "ecdh.sig", mustRunCLI(t, nil, "sign", "0x81000005", "--in", msgDigest, "--format", "raw", "--connect", c))
	ecdhJSON := writeTemp(t, dir, "ecdh.json", mustRunCLI(t, nil, "sign", "0x81000005", "--in", msgDigest, "--connect", c))

	other := writeTemp(t, dir, "other", []byte("another message"))
	generated := writeTemp(t, dir, "generated", append([]byte{0xff, 0x54, 0x43, 0x47}, message...))
	tampered := mustRead(t, ecdhRaw)
	tampered[len(tampered)-1] ^= 0x01
	ecdhTampered := writeTemp(t, dir, "tampered.sig", tampered)
	notDER := writeTemp(t, dir, "notder.sig", []byte{0x30, 0x03, 0x02})
	badJSON := writeTemp(t, dir, "bad.json", []byte(`{"algorithm": "RSASSA", "rsa_signature": "zz", "rsa_hash": "SHA256"}`))
	unknownField := writeTemp(t, dir, "unknown.json", []byte(`{"signature": "00"}`))

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"restricted raw", []string{"--key", f.aikPEM, "--in", msg, "--sig", aikRaw}, exitOK, "verified: RSASSA-SHA256 signature"},
		{"restricted JSON", []string{"--key", f.aikPub, "--in", msg, "--sig", aikJSON}, exitOK, "verified: RSASSA-SHA256 signature"},
		{"unrestricted message", []string{"--key", f.ecdhPEM, "--in", msg, "--sig", ecdhRaw}, exitOK, "verified: ECDSA-SHA256 signature"},
		{"unrestricted digest", []string{"--key", f.ecdhPub, "--in", msgDigest, "--sig", ecdhJSON, "--digest"}, exitOK, "verified: ECDSA-SHA256"},
		{"explicit hash", []string{"--key", f.ecdhPEM, "--in", msg, "--sig", ecdhRaw, "--hash", "sha256"}, exitOK, "verified"},
		{"digest without --digest", []string{"--key", f.ecdhPub, "--in", msgDigest, "--sig", ecdhJSON}, exitFailure,
			"invalid ECDSA-SHA256 signature; --in is a digest that the key signed as it is: verify it with --digest"},
		{"other message", []string{"--key", f.aikPEM, "--in", other, "--sig", aikRaw}, exitFailure, "verification failed: invalid RSASSA-SHA256 signature"},
		{"other key", []string{"--key", f.ekPEM, "--in", msg, "--sig", aikRaw}, exitFailure, "verification failed"},
		{"tampered ECDSA", []string{"--key", f.ecdhPEM, "--in", msg, "--sig", ecdhTampered}, exitFailure, "verification failed: invalid ECDSA-SHA256 signature"},
		{"PSS for PKCS1 signature", []string{"--key", f.aikPEM, "--in", msg, "--sig", aikRaw, "--scheme", "pss"}, exitFailure, "invalid RSAPSS-SHA256 signature"},
		{"other hash", []string{"--key", f.aikPEM, "--in", msg, "--sig", aikRaw, "--hash", "sha384"}, exitFailure, "invalid RSASSA-SHA384 signature"},
		{"TPM_GENERATED_VALUE", []string{"--key", f.aikPEM, "--in", generated, "--sig", aikRaw}, exitFailure, "begins with TPM_GENERATED_VALUE"},
		{"digest of wrong size", []string{"--key", f.ecdhPEM, "--in", msg, "--sig", ecdhRaw, "--digest"}, exitUsage, "must be a digest of 32 bytes"},
		{"hash with JSON", []string{"--key", f.aikPEM, "--in", msg, "--sig", aikJSON, "--hash", "sha256"}, exitUsage, "apply to a raw --sig only"},
		{"scheme with ECDSA key", []string{"--key", f.ecdhPEM, "--in", msg, "--sig", ecdhRaw, "--scheme", "pkcs1"}, exitUsage, "--scheme applies to RSA keys only"},
		{"unknown hash", []string{"--key", f.aikPEM, "--in", msg, "--sig", aikRaw, "--hash", "md5"}, exitUsage, "use sha256, sha1, sha384 or sha512"},
		{"ECDSA not DER", []string{"--key", f.ecdhPEM, "--in", msg, "--sig", notDER}, exitUsage, "not a DER SEQUENCE of r and s"},
		{"JSON not hex", []string{"--key", f.aikPEM, "--in", msg, "--sig", badJSON}, exitUsage, `field "rsa_signature"`},
		{"JSON unknown field", []string{"--key", f.aikPEM, "--in", msg, "--sig", unknownField}, exitUsage, `unknown field "signature"`},
		{"missing --sig", []string{"--key", f.aikPEM, "--in", msg}, exitUsage, "missing --sig FILE"},
		{"key is not a key", []string{"--key", msg, "--in", msg, "--sig", aikRaw}, exitUsage, "is not a public key file: expected a TPMT_PUBLIC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkResult(t, runCLI(t, nil, append([]string{"verify-sign"}, tc.args...)...), tc.code, tc.want)
		})
	}
}

func TestVerifyCertifyCases(t *testing.T) {
	a := startTestAgent(t)
	f := writeVerifierFiles(t, a)
	dir := f.dir
	nonce := "00112233445566778899aabbccddeeff"

	certifyJSON := mustRunCLI(t, nil, "certify", "0x81000005", "--nonce", nonce, "--connect", a.connect)
	jsonFile := writeTemp(t, dir, "certify.json", certifyJSON)
	rawFile := writeTemp(t, dir, "certify.raw",
		mustRunCLI(t, nil, "certify", "0x81000005", "--nonce", nonce, "--format", "raw", "--connect", a.connect))
	noNonce := writeTemp(t, dir, "nononce.json", mustRunCLI(t, nil, "certify", "0x81000005", "--connect", a.connect))

	var fields map[string]string
	if err := json.Unmarshal(certifyJSON, &fields); err != nil {
		t.Fatal(err)
	}
	withField := func(name, value string) []byte {
		changed := map[string]string{name: value}
		for k, v := range fields {
			if k != name {
				changed[k] = v
			}
		}
		b, err := json.Marshal(changed)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The last hex digit of the attestation is in the certified Name.
	attest := fields["attest"]
	lastDigit := "0"
	if strings.HasSuffix(attest, "0") {
		lastDigit = "1"
	}
	tampered := writeTemp(t, dir, "tampered.json", withField("attest", attest[:len(attest)-1]+lastDigit))
	swapped := writeTemp(t, dir, "swapped.json", withField("public", hex.EncodeToString(mustRead(t, f.aikPub))))
	truncated := writeTemp(t, dir, "truncated.raw", mustRead(t, rawFile)[:100])
	keyOut := filepath.Join(dir, "certified.pem")

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"JSON", []string{"--aik", f.aikPub, "--nonce", nonce, "--in", jsonFile, "--key-out", keyOut}, exitOK, "verified: the attestation key certified an ECC P-256 key"},
		{"raw", []string{"--aik", f.aikPub, "--nonce", nonce, "--in", rawFile}, exitOK, "and the nonce " + nonce},
		{"no nonce", []string{"--aik", f.aikPub, "--in", noNonce}, exitOK, " and no nonce\n"},
		{"other nonce", []string{"--aik", f.aikPub, "--nonce", "00", "--in", jsonFile}, exitFailure, "verification failed: certify: extraData is 0x" + nonce},
		{"missing nonce", []string{"--aik", f.aikPub, "--in", jsonFile}, exitFailure, "but the nonce is 0x"},
		{"tampered attestation", []string{"--aik", f.aikPub, "--nonce", nonce, "--in", tampered}, exitFailure, "verification failed: certify: sig over attest"},
		{"other public area", []string{"--aik", f.aikPub, "--nonce", nonce, "--in", swapped}, exitFailure, "certified name is 0x"},
		{"unrestricted signer", []string{"--aik", f.ecdhPub, "--nonce", nonce, "--in", jsonFile}, exitFailure, "AIK is not a restricted signing key"},
		{"wrong AIK as PEM", []string{"--aik", f.ecdhPEM, "--nonce", nonce, "--in", jsonFile}, exitFailure, "scheme RSASSA does not suit an ECC key"},
		{"bad nonce", []string{"--aik", f.aikPub, "--nonce", "0x0g", "--in", jsonFile}, exitUsage, `invalid --nonce "0x0g"`},
		{"truncated raw", []string{"--aik", f.aikPub, "--nonce", nonce, "--in", truncated}, exitUsage, "--in"},
		{"missing --in", []string{"--aik", f.aikPub}, exitUsage, "missing --in FILE"},
		{"missing --aik", []string{"--in", jsonFile}, exitUsage, "missing --aik FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkResult(t, runCLI(t, nil, append([]string{"verify-certify"}, tc.args...)...), tc.code, tc.want)
		})
	}

	block, _ := pem.Decode(mustRead(t, keyOut))
	if block == nil {
		t.Fatal("--key-out wrote no PEM")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want, err := a.p.ECDHKey.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if !key.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
		t.Error("--key-out is not the ECDH key")
	}

	// A --key-out that cannot be written after the check passed.
	unwritable := filepath.Join(dir, "no-such-dir", "certified.pem")
	r := runCLI(t, nil, "verify-certify", "--aik", f.aikPub, "--nonce", nonce, "--in", jsonFile, "--key-out", unwritable)
	if r.code != exitKeyOut {
		t.Errorf("unwritable --key-out: exit status %d, want %d; stderr %q", r.code, exitKeyOut, r.stderr)
	}
	if !strings.HasPrefix(string(r.stdout), "verified: the attestation key certified") || strings.Count(string(r.stdout), "\n") != 1 {
		t.Errorf("unwritable --key-out: stdout %q, want the verified line", r.stdout)
	}
	if want := "vcomlink verify-certify: --key-out: open " + unwritable + ": no such file or directory\n"; string(r.stderr) != want {
		t.Errorf("unwritable --key-out: stderr %q, want %q", r.stderr, want)
	}

	r = runCLI(t, nil, "verify-certify", "--aik", f.aikPEM, "--nonce", nonce, "--in", jsonFile)
	checkResult(t, r, exitOK, "verified")
	if !strings.Contains(string(r.stderr), "restricted attribute and scheme were not checked") {
		t.Errorf("a PEM AIK gives no note on standard error: %q", r.stderr)
	}
}
