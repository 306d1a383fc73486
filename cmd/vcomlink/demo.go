package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vcomlink/vcomlink/api/vcom"
	"github.com/vcomlink/vcomlink/client"
	"github.com/vcomlink/vcomlink/policy"
	"github.com/vcomlink/vcomlink/server"
	"github.com/vcomlink/vcomlink/tpm"
	"github.com/vcomlink/vcomlink/tpm/backend"
	"github.com/vcomlink/vcomlink/transport"
	"github.com/vcomlink/vcomlink/verify"
)

// demoTimeout bounds the whole demo, so that a fault never leaves it hanging.
const demoTimeout = 2 * time.Minute

const demoAbout = `Starts the agent with the embedded TPM simulator on a temporary Unix socket,
then plays the guest and the remote verifier: it checks the EK certificate,
verifies signatures, activates a credential and verifies a certification.
It needs no TPM and no VM. Each step and its result go to standard output.`

const demoExitStatuses = `Exit status: 0 every step verified; 1 a step failed (FAILED and the reason
go to standard output); 2 invalid command line.`

func runDemo(args []string, stdout, stderr io.Writer) int {
	c := newCLI("demo", "", 0, demoAbout, demoExitStatuses)
	verbose := c.fs.Bool("verbose", false, "also print the agent's debug log to standard error")
	if _, status, ok := c.start(args, stdout, stderr); !ok {
		return status
	}

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := demo(stdout, log); err != nil {
		fmt.Fprintf(stdout, "\nFAILED: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "\nAll steps verified.")
	return exitOK
}

// demoAgent is the agent the demo runs in process.
type demoAgent struct {
	address string
	ca      *x509.Certificate
	close   func()
}

func startDemoAgent(out io.Writer, log *slog.Logger) (*demoAgent, error) {
	fmt.Fprintln(out, "Starting the agent with the embedded TPM simulator...")
	opened, err := backend.Open(backend.Spec{Kind: backend.Simulator})
	if err != nil {
		return nil, err
	}
	cfg := tpm.DefaultConfig()
	cfg.Logger = log
	svc, err := tpm.New(opened.Open, cfg)
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "vcomlink-demo")
	if err != nil {
		svc.Close()
		return nil, err
	}
	socket := filepath.Join(dir, "agent.sock")
	l, err := transport.Listen("unix://" + socket + "?vm=demo")
	if err != nil {
		svc.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	srv := server.New(server.Config{TPM: svc, Policy: policy.NewDefault(), Logger: log})
	go srv.Serve(l)

	fmt.Fprintf(out, "  agent listening on unix://%s (peer vm:demo)\n", socket)
	return &demoAgent{
		address: "unix://" + socket,
		ca:      opened.Provisioned.CA.Certificate,
		close: func() {
			srv.Shutdown(context.Background())
			svc.Close()
			os.RemoveAll(dir)
		},
	}, nil
}

func demo(out io.Writer, log *slog.Logger) error {
	agent, err := startDemoAgent(out, log)
	if err != nil {
		return fmt.Errorf("start the agent: %w", err)
	}
	defer agent.close()

	c, err := client.New(agent.address)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	d := &demoRun{out: out, c: c, ctx: ctx, ca: agent.ca}

	steps := []struct {
		title string
		run   func() error
	}{
		{"Guest reads the EK certificate; verifier checks it against the EK and the CA", d.checkEKCertificate},
		{"Guest signs a message with the attestation key; verifier checks the signature", d.signWithAIK},
		{"Guest signs a digest with the ECDH key; verifier checks the signature", d.signWithECDHKey},
		{"Credential activation: verifier makes a credential for the EK and AIK name; the TPM recovers it", d.activateCredential},
		{"Guest has the AIK certify the ECDH key with the verifier's nonce; verifier checks it", d.certifyECDHKey},
	}
	for i, step := range steps {
		fmt.Fprintf(out, "\n%d. %s\n", i+1, step.title)
		if err := step.run(); err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
	}
	return nil
}

// demoRun carries what the demo's steps share: the guest's client, and the
// public areas that earlier steps verified.
type demoRun struct {
	out io.Writer
	c   *client.Client
	ctx context.Context
	ca  *x509.Certificate

	params *client.ActivateCredParamsResult
}

func (d *demoRun) printf(format string, args ...any) {
	fmt.Fprintf(d.out, "   "+format+"\n", args...)
}

func (d *demoRun) credParams() (*client.ActivateCredParamsResult, error) {
	if d.params != nil {
		return d.params, nil
	}
	params, err := d.c.ActivateCredParams(d.ctx, vcom.HandleAIK)
	if err != nil {
		return nil, err
	}
	d.params = params
	return params, nil
}

func (d *demoRun) checkEKCertificate() error {
	nv, err := d.c.ReadNV(d.ctx, vcom.HandleEKCert)
	if err != nil {
		return err
	}
	cert, err := nv.Certificate()
	if err != nil {
		return err
	}
	d.printf("readnv 0x%08x: %d bytes, a certificate issued by %q to %s",
		vcom.HandleEKCert, len(nv.Data), cert.Issuer.CommonName, describeEKCertSubject(cert))
	params, err := d.credParams()
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(d.ca)
	if err := verify.VerifyEKCert(params.EK, cert, roots); err != nil {
		return err
	}
	d.printf("verified: the certificate holds the EK's public key and chains to the run's CA")
	return nil
}

// describeEKCertSubject names what an EK certificate certifies: its
// subject, or the TPM that its subjectAltName names when the subject is
// empty, as it often is in EK certificates.
func describeEKCertSubject(cert *x509.Certificate) string {
	if subject := cert.Subject.String(); subject != "" {
		return fmt.Sprintf("%q", subject)
	}
	tpm, err := verify.ParseTPMIdentity(cert)
	if err != nil {
		return "an empty subject, as EK certificates often have"
	}

	manufacturer := tpm.Manufacturer
	if text := vendorText(manufacturer); text != "" {
		manufacturer += " (" + text + ")"
	}
	return fmt.Sprintf("the TPM of manufacturer %s, model %q, version %s", manufacturer, tpm.Model, tpm.Version)
}

// vendorText returns the ASCII text of a TPM manufacturer ID such as
// "id:4D534654" (MSFT), or "" when the ID is not printable ASCII in that
// form.
func vendorText(id string) string {
	digits, ok := strings.CutPrefix(id, "id:")
	if !ok {
		return ""
	}
	b, err := hex.DecodeString(digits)
	if err != nil || len(b) != 4 {
		return ""
	}
	text := strings.TrimRight(string(b), "\x00 ")
	for _, c := range text {
		if c < 0x20 || c > 0x7e {
			return ""
		}
	}
	return text
}

func (d *demoRun) signWithAIK() error {
	aik, err := d.c.GetPub(d.ctx, vcom.HandleAIK)
	if err != nil {
		return err
	}
	message := []byte("a message from the guest, hashed by the TPM")
	sig, err := d.c.Sign(d.ctx, vcom.HandleAIK, message)
	if err != nil {
		return err
	}
	d.printf("sign 0x%08x: %s-%s signature of %d bytes", vcom.HandleAIK, sig.Response.Algorithm, sig.Response.RsaHash, len(sig.Response.RsaSignature))
	if err := verify.VerifySignature(aik.Public, message, sig.Response); err != nil {
		return err
	}
	d.printf("verified with the AIK's public key from getpub")
	return nil
}

func (d *demoRun) signWithECDHKey() error {
	key, err := d.c.GetPub(d.ctx, vcom.HandleECDHKey)
	if err != nil {
		return err
	}
	digest := sha256.Sum256([]byte("a message the guest hashed itself"))
	sig, err := d.c.Sign(d.ctx, vcom.HandleECDHKey, digest[:])
	if err != nil {
		return err
	}
	d.printf("sign 0x%08x: %s-%s signature, r %d bytes, s %d bytes", vcom.HandleECDHKey, sig.Response.Algorithm, sig.Response.EccHash, len(sig.Response.EccSignatureR), len(sig.Response.EccSignatureS))
	if err := verify.VerifySignature(key.Public, digest[:], sig.Response); err != nil {
		return err
	}
	d.printf("verified with the ECDH key's public key from getpub")
	return nil
}

func (d *demoRun) activateCredential() error {
	params, err := d.credParams()
	if err != nil {
		return err
	}
	d.printf("activatecredparams 0x%08x: AIK name %x", vcom.HandleAIK, params.AIKName)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	cred, encSecret, err := verify.MakeCredential(rand.Reader, params.EK, params.AIKName, secret)
	if err != nil {
		return err
	}
	d.printf("verifier made a credential for a random 32-byte secret")
	activated, err := d.c.ActivateCredential(d.ctx, vcom.HandleAIK, cred, encSecret)
	if err != nil {
		return err
	}
	if !bytes.Equal(activated.Secret, secret) {
		return fmt.Errorf("the TPM recovered %x, not the secret %x", activated.Secret, secret)
	}
	d.printf("verified: the TPM recovered the secret, so the AIK and the EK are in the same TPM")
	return nil
}

func (d *demoRun) certifyECDHKey() error {
	params, err := d.credParams()
	if err != nil {
		return err
	}
	key, err := d.c.GetPub(d.ctx, vcom.HandleECDHKey)
	if err != nil {
		return err
	}
	nonce := make([]byte, 20)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	certified, err := d.c.Certify(d.ctx, vcom.HandleECDHKey, nonce)
	if err != nil {
		return err
	}
	d.printf("certifykey 0x%08x with nonce %x: attestation of %d bytes", vcom.HandleECDHKey, nonce, len(certified.Response.Attest))
	result, err := verify.VerifyCertify(params.AIK, nonce, certified.Response)
	if err != nil {
		return err
	}
	if !bytes.Equal(result.Name, key.Name) {
		return fmt.Errorf("the certified name %x is not the ECDH key's name %x", result.Name, key.Name)
	}
	d.printf("verified: AIK signature, TPM_GENERATED_VALUE, nonce, and certified name %x", result.Name)
	return nil
}
