package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/internal/simtest"
	"github.com/vcomlink/vcomlink/verify"
)

func TestGetPubFormats(t *testing.T) {
	a := startTestAgent(t)
	aik := a.p.AIK

	fields := decodeJSON(t, mustRunCLI(t, nil, "getpub", "0x81000003", "--connect", a.connect))
	if got := hexField(t, fields, "public"); !bytes.Equal(got, tpm2.Marshal(aik.Public)) {
		t.Errorf("json public = %x, want the AIK's TPMT_PUBLIC", got)
	}
	if got := fields["algorithm"]; got != float64(tpm2.TPMAlgRSA) {
		t.Errorf("json algorithm = %v, want 1", got)
	}
	wantAttributes := binary.BigEndian.Uint32(tpm2.Marshal(aik.Public)[4:8])
	if got := fields["attributes"]; got != float64(wantAttributes) {
		t.Errorf("json attributes = %v, want %d", got, wantAttributes)
	}

	// Decimal handle, flags before the handle, and unix:/PATH with one slash.
	oneSlash := "unix:" + strings.TrimPrefix(a.connect, "unix://")
	raw := mustRunCLI(t, nil, "getpub", "--connect", oneSlash, "--format", "raw", "--timeout", "1m30s", "2164260867")
	if !bytes.Equal(raw, tpm2.Marshal(aik.Public)) {
		t.Errorf("raw = %x, want the AIK's TPMT_PUBLIC", raw)
	}

	for _, key := range []struct {
		handle string
		public tpm2.TPMTPublic
	}{
		{"0x81000003", aik.Public},
		{"0x81000005", a.p.ECDHKey.Public},
	} {
		out := mustRunCLI(t, nil, "getpub", key.handle, "--connect", a.connect, "--format", "pem")
		block, rest := pem.Decode(out)
		if block == nil || block.Type != "PUBLIC KEY" || len(rest) != 0 {
			t.Fatalf("pem of %s is not one PUBLIC KEY block:\n%s", key.handle, out)
		}
		got, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		want, err := verify.PublicKey(&key.public)
		if err != nil {
			t.Fatal(err)
		}
		if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
			t.Errorf("pem of %s is not the key's public key", key.handle)
		}
	}
}

func TestSignFormats(t *testing.T) {
	a := startTestAgent(t)
	dir := t.TempDir()

	message := []byte("message that the TPM hashes")
	in := writeTemp(t, dir, "message", message)
	out := mustRunCLI(t, nil, "sign", "0x81000003", "--in", in, "--connect", a.connect)
	var rsp vcom.TpmResponseSign
	if err := unmarshalJSON(out, &rsp); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if err := verify.VerifySignature(&a.p.AIK.Public, message, &rsp); err != nil {
		t.Errorf("json signature: %v", err)
	}

	raw := mustRunCLI(t, nil, "sign", "0x81000003", "--in", in, "--format", "raw", "--connect", a.connect)
	aikKey, err := a.p.AIK.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(message)
	if err := rsa.VerifyPKCS1v15(aikKey.(*rsa.PublicKey), crypto.SHA256, digest[:], raw); err != nil {
		t.Errorf("raw RSA signature: %v", err)
	}

	// An unrestricted key signs a digest, here read from standard input.
	raw = mustRunCLI(t, digest[:], "sign", "0x81000005", "--in", "-", "--format", "raw", "--connect", a.connect)
	eccKey, err := a.p.ECDHKey.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(eccKey.(*ecdsa.PublicKey), digest[:], raw) {
		t.Error("raw ECDSA signature does not verify")
	}

	// The largest data that fits the agent's request limit.
	largest := bytes.Repeat([]byte{0x5A}, 65526)
	out = mustRunCLI(t, largest, "sign", "0x81000003", "--in", "-", "--connect", a.connect)
	if err := unmarshalJSON(out, &rsp); err != nil {
		t.Fatal(err)
	}
	if err := verify.VerifySignature(&a.p.AIK.Public, largest, &rsp); err != nil {
		t.Errorf("signature of 65526 bytes: %v", err)
	}
}

func TestReadNVFormats(t *testing.T) {
	a := startTestAgent(t)
	cert := a.p.EKCert.Raw

	raw := mustRunCLI(t, nil, "readnv", "0x01c00002", "--format", "raw", "--connect", a.connect)
	if !bytes.HasPrefix(raw, cert) {
		t.Errorf("raw does not begin with the EK certificate")
	}
	fields := decodeJSON(t, mustRunCLI(t, nil, "readnv", "0x01c00002", "--connect", a.connect))
	if got := hexField(t, fields, "data"); !bytes.Equal(got, raw) {
		t.Errorf("json data differs from raw")
	}

	// 29360130 is 0x01c00002 in decimal.
	decimal := mustRunCLI(t, nil, "readnv", "29360130", "--format", "raw", "--connect", a.connect)
	if !bytes.Equal(decimal, raw) {
		t.Errorf("raw of the decimal index differs from raw of 0x01c00002")
	}

	out := mustRunCLI(t, nil, "readnv", "0x01c00002", "--format", "pem", "--connect", a.connect)
	block, rest := pem.Decode(out)
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("pem is not one CERTIFICATE block:\n%s", out)
	}
	if !bytes.Equal(block.Bytes, cert) {
		t.Error("pem certificate differs from the EK certificate")
	}
}

func TestActivateCredParamsFormats(t *testing.T) {
	a := startTestAgent(t)
	ek := tpm2.Marshal(a.p.EK.Public)
	aik := tpm2.Marshal(a.p.AIK.Public)
	name := tpm2.Marshal(a.p.AIK.Name)

	fields := decodeJSON(t, mustRunCLI(t, nil, "activatecredparams", "0x81000003", "--connect", a.connect))
	for field, want := range map[string][]byte{"ek": ek, "aik_pub": aik, "aik_name": name} {
		if got := hexField(t, fields, field); !bytes.Equal(got, want) {
			t.Errorf("json %s = %x, want %x", field, got, want)
		}
	}

	raw := mustRunCLI(t, nil, "activatecredparams", "0x81000003", "--format", "raw", "--connect", a.connect)
	rest := raw
	for _, want := range [][]byte{ek, aik, name[2:]} {
		got, after, err := cutTPM2B("TPM2B", rest)
		if err != nil {
			t.Fatalf("raw: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("raw structure = %x, want %x", got, want)
		}
		rest = after
	}
	if len(rest) != 0 {
		t.Errorf("raw has %d bytes after the TPM2B_NAME", len(rest))
	}
}

func TestActivateCredForms(t *testing.T) {
	a := startTestAgent(t)
	dir := t.TempDir()
	secret := []byte("secret of the verifier")
	cred, encSecret, err := verify.MakeCredential(rand.Reader, &a.p.EK.Public, tpm2.Marshal(a.p.AIK.Name), secret)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := verify.MarshalCredentialBlob(cred, encSecret)
	if err != nil {
		t.Fatal(err)
	}

	blobFile := writeTemp(t, dir, "cred.blob", blob)
	raw := mustRunCLI(t, nil, "activatecred", "--credential-file", blobFile,
		"--format", "raw", "--connect", a.connect)
	if !bytes.Equal(raw, secret) {
		t.Errorf("credential file: recovered %q, want %q", raw, secret)
	}

	// The handle as an argument, alone and with the same --aik.
	for _, args := range [][]string{
		{"activatecred", "0x81000003"},
		{"activatecred", "2164260867", "--aik", "0x81000003"},
	} {
		args = append(args, "--credential-file", blobFile, "--format", "raw", "--connect", a.connect)
		if raw := mustRunCLI(t, nil, args...); !bytes.Equal(raw, secret) {
			t.Errorf("activatecred %q: recovered %q, want %q", args, raw, secret)
		}
	}

	// The credential names the AIK, so activating it for the ECDH key
	// fails, which shows that the argument chose the key.
	r := runCLI(t, nil, "activatecred", "0x81000005", "--credential-file", blobFile, "--connect", a.connect)
	if r.code != exitRefused {
		t.Errorf("activatecred 0x81000005: exit status %d, want %d; stderr %q", r.code, exitRefused, r.stderr)
	}
	if !strings.Contains(string(r.stderr), "0x81000005") {
		t.Errorf("activatecred 0x81000005: stderr %q does not name the handle", r.stderr)
	}

	out := mustRunCLI(t, nil, "activatecred", "--aik", "0x81000003",
		"--cred", writeTemp(t, dir, "c", cred), "--secret", writeTemp(t, dir, "s", encSecret), "--connect", a.connect)
	if got := hexField(t, decodeJSON(t, out), "secret"); !bytes.Equal(got, secret) {
		t.Errorf("--cred and --secret: recovered %q, want %q", got, secret)
	}
}

func TestCertifyFormats(t *testing.T) {
	a := startTestAgent(t)
	nonce := []byte{0x0a, 0x0b, 0x0c, 0x0d}

	out := mustRunCLI(t, nil, "certify", "0x81000005", "--nonce", hex.EncodeToString(nonce), "--connect", a.connect)
	var rsp vcom.TpmResponseCertify
	if err := unmarshalJSON(out, &rsp); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	certified, err := verify.VerifyCertify(&a.p.AIK.Public, nonce, &rsp)
	if err != nil {
		t.Fatalf("json certification: %v", err)
	}
	if !bytes.Equal(certified.Name, a.p.ECDHKey.Name.Buffer) {
		t.Errorf("certified Name = %x, want the ECDH key's", certified.Name)
	}

	// The longest nonce that the CLI and the agent take.
	longest := strings.Repeat("a5", 64)
	out = mustRunCLI(t, nil, "certify", "0x81000005", "--nonce", longest, "--connect", a.connect)
	if err := unmarshalJSON(out, &rsp); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	longestBytes, _ := hex.DecodeString(longest)
	if _, err := verify.VerifyCertify(&a.p.AIK.Public, longestBytes, &rsp); err != nil {
		t.Errorf("certification with a 64-byte nonce: %v", err)
	}

	raw := mustRunCLI(t, nil, "certify", "0x81000005", "--format", "raw", "--connect", a.connect)
	parsed, err := parseCertifyRaw(raw)
	if err != nil {
		t.Fatalf("raw: %v", err)
	}
	if _, err := verify.VerifyCertify(&a.p.AIK.Public, nil, parsed); err != nil {
		t.Errorf("raw certification without a nonce: %v", err)
	}
}

// defineNV defines an NV index that guests may read with its empty auth
// value, and writes data to it.
func defineNV(t *testing.T, sim *simtest.TPM, index uint32, data []byte) {
	t.Helper()
	public := tpm2.TPMSNVPublic{
		NVIndex:    tpm2.TPMHandle(index),
		NameAlg:    tpm2.TPMAlgSHA256,
		Attributes: tpm2.TPMANV{OwnerWrite: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary},
		DataSize:   uint16(len(data)),
	}
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if _, err := (tpm2.NVDefineSpace{AuthHandle: owner, PublicInfo: tpm2.New2B(public)}).Execute(sim); err != nil {
		t.Fatalf("NV_DefineSpace: %v", err)
	}
	name, err := tpm2.NVName(&public)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tpm2.NVWrite{
		AuthHandle: owner,
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: *name},
		Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data},
	}.Execute(sim)
	if err != nil {
		t.Fatalf("NV_Write: %v", err)
	}
}

// persistKeyedHash makes an HMAC key persistent at handle, in place of the
// device key, because the simulator's NV has no room for another object.
func persistKeyedHash(t *testing.T, sim *simtest.TPM, handle uint32) {
	t.Helper()
	sim.Evict(t, vcom.HandleDeviceKey)
	template := tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, NoDA: true, SignEncrypt: true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{
				Scheme:  tpm2.TPMAlgHMAC,
				Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256}),
			},
		}),
	}
	created, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(template),
	}.Execute(sim)
	if err != nil {
		t.Fatalf("CreatePrimary: %v", err)
	}
	defer (tpm2.FlushContext{FlushHandle: created.ObjectHandle}).Execute(sim)
	_, err = tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: created.ObjectHandle, Name: created.Name},
		PersistentHandle: tpm2.TPMHandle(handle),
	}.Execute(sim)
	if err != nil {
		t.Fatalf("EvictControl: %v", err)
	}
}

// TestGuestExitStatuses checks the exit status and the one-line message of
// each kind of failure.
func TestGuestExitStatuses(t *testing.T) {
	a := startTestAgent(t)
	defineNV(t, a.sim, 0x01500010, []byte("not a certificate"))
	persistKeyedHash(t, a.sim, 0x81000010)

	dir := t.TempDir()
	missingSocket := "unix://" + shortTempDir(t) + "/none.sock"
	message := writeTemp(t, dir, "message", []byte("message"))
	tooLarge := writeTemp(t, dir, "large", make([]byte, 65527))
	shortFile := writeTemp(t, dir, "short", []byte{0x00})
	badPrefix := writeTemp(t, dir, "prefix", []byte{0x00, 0x05, 1, 2})
	emptyTPM2B := writeTemp(t, dir, "empty", []byte{0x00, 0x00})
	notBlob := writeTemp(t, dir, "notblob", []byte("0123456789"))
	c := a.connect

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"agent rejects NV index", []string{"readnv", "0x01600000", "--connect", c}, exitRefused, "403 Forbidden"},
		{"handle not in the TPM", []string{"getpub", "0x81000099", "--connect", c}, exitRefused, "404 Not Found"},
		{"digest of wrong size", []string{"sign", "0x81000005", "--in", message, "--connect", c}, exitRefused, "400 Bad Request"},
		{"nonce too long", []string{"certify", "0x81000005", "--nonce", strings.Repeat("00", 65), "--connect", c}, exitUsage,
			"--nonce is 65 bytes, over the maximum of 64 bytes (128 hex digits)"},
		{"certify with AIK on EK", []string{"certify", "0x81000001", "--connect", c}, exitRefused, "certifykey 0x81000001"},
		{"agent not running", []string{"getpub", "0x81000003", "--connect", missingSocket}, exitTransport,
			"no such file or directory; check that the agent runs and that --connect " + missingSocket + " is its address"},
		{"handle not a number", []string{"getpub", "nope", "--connect", c}, exitUsage, `invalid HANDLE "nope"`},
		{"handle too large", []string{"getpub", "0x100000000", "--connect", c}, exitUsage, `invalid HANDLE "0x100000000"`},
		{"index not a number", []string{"readnv", "0xZZ", "--connect", c}, exitUsage, `invalid INDEX "0xZZ": write it in hex as 0x01c00002 or in decimal`},
		{"key handle without 0x", []string{"getpub", "81000003", "--connect", c}, exitUsage,
			`invalid HANDLE "81000003": it was read as decimal (0x04d3f643), which is neither a persistent nor an NV handle: write hex handles with 0x, as 0x81000003`},
		{"sign handle without 0x", []string{"sign", "81000005", "--in", message, "--connect", c}, exitUsage, "as 0x81000005"},
		{"certify handle without 0x", []string{"certify", "81000005", "--connect", c}, exitUsage, "as 0x81000005"},
		{"params handle without 0x", []string{"activatecredparams", "81000003", "--connect", c}, exitUsage, "as 0x81000003"},
		{"NV index without 0x", []string{"readnv", "01500000", "--connect", c}, exitUsage, "read as decimal (0x0016e360)"},
		{"NV index with hex digits", []string{"readnv", "1c00002", "--connect", c}, exitUsage, `invalid INDEX "1c00002": write hex handles with 0x, as 0x01c00002`},
		{"--aik without 0x", []string{"activatecred", "--aik", "81000003", "--credential-file", notBlob, "--connect", c}, exitUsage,
			`invalid value "81000003" for flag --aik: it was read as decimal (0x04d3f643)`},
		{"handle missing", []string{"getpub", "--connect", c}, exitUsage, "expected HANDLE, got 0 arguments"},
		{"extra argument", []string{"certify", "1", "2", "--connect", c}, exitUsage, "expected HANDLE, got 2 arguments"},
		{"activatecred handle and other --aik", []string{"activatecred", "0x81000003", "--aik", "0x81000005", "--credential-file", notBlob, "--connect", c},
			exitUsage, "HANDLE 0x81000003 and --aik 0x81000005 name different keys"},
		{"activatecred handle and default --aik", []string{"activatecred", "0x81000005", "--aik", "0x81000003", "--credential-file", notBlob, "--connect", c},
			exitUsage, "name different keys"},
		{"activatecred two handles", []string{"activatecred", "0x81000003", "0x81000005", "--connect", c}, exitUsage, "expected [HANDLE], got 2 arguments"},
		{"activatecred invalid handle", []string{"activatecred", "81000003", "--credential-file", notBlob, "--connect", c}, exitUsage, `invalid HANDLE "81000003"`},
		{"unknown flag", []string{"getpub", "1", "--bogus", "--connect", c}, exitUsage, "vcomlink getpub: unknown flag --bogus (see vcomlink getpub --help)"},
		{"unknown short flag", []string{"getpub", "1", "-v", "--connect", c}, exitUsage, "vcomlink getpub: unknown flag -v (see"},
		{"unknown flag with a value", []string{"getpub", "1", "--connect", c, "--verbose=2"}, exitUsage, "unknown flag --verbose (see"},
		{"unknown format", []string{"getpub", "1", "--format", "der", "--connect", c}, exitUsage, "use json, raw or pem"},
		{"pem for sign", []string{"sign", "1", "--format", "pem", "--in", message, "--connect", c}, exitUsage, "use json or raw"},
		{"invalid address", []string{"getpub", "1", "--connect", "vsock://2"}, exitUsage, "--connect: invalid address"},
		{"address with vm", []string{"getpub", "1", "--connect", c + "?vm=x"}, exitUsage, `unexpected query "?vm=x": vm=NAME belongs to the agent's --listen address`},
		{"relative socket path", []string{"getpub", "1", "--connect", "unix:v.sock"}, exitUsage, "expected unix:///absolute/path"},
		{"invalid timeout", []string{"getpub", "1", "--timeout", "soon", "--connect", c}, exitUsage,
			`invalid value "soon" for flag --timeout: write a duration as a number and a unit, such as 30s`},
		{"timeout without unit", []string{"getpub", "1", "--timeout", "5", "--connect", c}, exitUsage,
			`invalid value "5" for flag --timeout: a duration needs a unit, such as 10s or 1m`},
		{"negative timeout", []string{"getpub", "1", "--timeout", "-5s", "--connect", c}, exitUsage,
			"invalid --timeout -5s: it must be 0 (no limit) or more"},
		{"sign without --in", []string{"sign", "0x81000003", "--connect", c}, exitUsage, "missing --in FILE"},
		{"sign missing file", []string{"sign", "0x81000003", "--in", dir + "/none", "--connect", c}, exitUsage, "no such file or directory"},
		{"sign data too large", []string{"sign", "0x81000003", "--in", tooLarge, "--connect", c}, exitUsage, "over the agent's limit of 65536"},
		{"nonce not hex", []string{"certify", "0x81000005", "--nonce", "xyz", "--connect", c}, exitUsage, `invalid --nonce "xyz"`},
		{"nonce odd length", []string{"certify", "0x81000005", "--nonce", "abc", "--connect", c}, exitUsage, `invalid --nonce "abc"`},
		{"pem of non-certificate", []string{"readnv", "0x01500010", "--format", "pem", "--connect", c}, exitUsage, "not a DER SEQUENCE (0x30). Use --format raw or json"},
		{"pem of HMAC key", []string{"getpub", "0x81000010", "--format", "pem", "--connect", c}, exitUsage, "not an RSA or ECC key"},
		{"no credential", []string{"activatecred", "--connect", c}, exitUsage, "missing credential"},
		{"both credential forms", []string{"activatecred", "--credential-file", notBlob, "--cred", badPrefix, "--connect", c}, exitUsage, "not both"},
		{"cred without secret", []string{"activatecred", "--cred", badPrefix, "--connect", c}, exitUsage, "TPM2B_ID_OBJECT size prefix is 5 but 2 bytes follow"},
		{"cred too short", []string{"activatecred", "--cred", shortFile, "--secret", badPrefix, "--connect", c}, exitUsage, "too short for a TPM2B_ID_OBJECT"},
		{"empty secret", []string{"activatecred", "--cred", emptyTPM2B, "--secret", emptyTPM2B, "--connect", c}, exitUsage, "TPM2B_ID_OBJECT is empty"},
		{"credential file of wrong magic", []string{"activatecred", "--credential-file", notBlob, "--connect", c}, exitUsage, "not the magic 0xbadcc0de"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, nil, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit status %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			stderr := string(r.stderr)
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.want)
			}
			if lines := strings.Count(stderr, "\n"); lines != 1 {
				t.Errorf("stderr has %d lines, want 1: %q", lines, stderr)
			}
			if len(r.stdout) != 0 {
				t.Errorf("stdout is not empty: %q", r.stdout)
			}
		})
	}
}

// TestGuestTransportHintOnlyForDial checks that the hint to check the agent
// and --connect follows a failed connection only: an agent that hangs up
// without a response was reached.
func TestGuestTransportHintOnlyForDial(t *testing.T) {
	socket := filepath.Join(shortTempDir(t), "hangup.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	r := runCLI(t, nil, "getpub", "0x81000003", "--connect", "unix://"+socket)
	if r.code != exitTransport {
		t.Errorf("exit status %d, want %d; stderr: %s", r.code, exitTransport, r.stderr)
	}
	if strings.Contains(string(r.stderr), "check that the agent runs") {
		t.Errorf("stderr %q gives the hint for an agent that was not reached", r.stderr)
	}
}
