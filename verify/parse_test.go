package verify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestParsePublicRoundTrip(t *testing.T) {
	k := keys(t)
	for _, key := range []*tpmKey{k.rsaEK, k.eccEK, k.aik, k.eccAK, k.ecc, k.pss} {
		public, err := ParsePublic(key.raw)
		if err != nil {
			t.Fatalf("ParsePublic: %v", err)
		}
		if got := tpm2.Marshal(public); !bytes.Equal(got, key.raw) {
			t.Errorf("ParsePublic then Marshal gives 0x%x, want 0x%x", got, key.raw)
		}
	}
}

func TestParsePublicRejects(t *testing.T) {
	k := keys(t)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "TPMT_PUBLIC is empty"},
		{"trailing bytes", append(bytes.Clone(k.aik.raw), 0, 0, 0), "3 trailing bytes"},
		{"truncated", k.aik.raw[:len(k.aik.raw)-1], "invalid TPMT_PUBLIC"},
		{"with size prefix", tpm2.Marshal(tpm2.New2B(*k.aik.public)), "invalid TPMT_PUBLIC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePublic(tc.in)
			if err == nil {
				t.Fatal("ParsePublic succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParsePublic error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestNameMatchesTPM(t *testing.T) {
	k := keys(t)
	for _, key := range []*tpmKey{k.rsaEK, k.eccEK, k.aik, k.ecc} {
		name, err := Name(key.public)
		if err != nil {
			t.Fatalf("Name: %v", err)
		}
		if !bytes.Equal(name, key.name.Buffer) {
			t.Errorf("Name is 0x%x, the TPM's is 0x%x", name, key.name.Buffer)
		}

		parsed, err := ParseName(key.wireName())
		if err != nil {
			t.Fatalf("ParseName: %v", err)
		}
		if !bytes.Equal(parsed, key.name.Buffer) {
			t.Errorf("ParseName is 0x%x, want 0x%x", parsed, key.name.Buffer)
		}
	}
}

func TestPublicKeyMatchesGoTPM(t *testing.T) {
	k := keys(t)
	for _, key := range []*tpmKey{k.rsaEK, k.eccEK, k.aik, k.ecc, k.pss} {
		got, err := PublicKey(key.public)
		if err != nil {
			t.Fatalf("PublicKey: %v", err)
		}
		want, err := tpm2.Pub(*key.public)
		if err != nil {
			t.Fatalf("tpm2.Pub: %v", err)
		}
		switch g := got.(type) {
		case *rsa.PublicKey:
			if !g.Equal(want) {
				t.Errorf("PublicKey is %v, want %v", g, want)
			}
		case *ecdsa.PublicKey:
			if !g.Equal(want) {
				t.Errorf("PublicKey is %v, want %v", g, want)
			}
		default:
			t.Errorf("PublicKey returned %T", got)
		}
	}
}

func TestPublicKeyRejects(t *testing.T) {
	k := keys(t)

	// edit returns a copy of key's public area changed by change.
	edit := func(key *tpmKey, change func(*tpm2.TPMTPublic)) *tpm2.TPMTPublic {
		public, err := ParsePublic(key.raw)
		if err != nil {
			t.Fatal(err)
		}
		change(public)
		return public
	}
	rsaParms := func(p *tpm2.TPMTPublic) *tpm2.TPMSRSAParms {
		parms, err := p.Parameters.RSADetail()
		if err != nil {
			t.Fatal(err)
		}
		return parms
	}
	eccPoint := func(p *tpm2.TPMTPublic) *tpm2.TPMSECCPoint {
		point, err := p.Unique.ECC()
		if err != nil {
			t.Fatal(err)
		}
		return point
	}

	for _, tc := range []struct {
		name string
		pub  *tpm2.TPMTPublic
		want string
	}{
		{"missing", nil, "public area is missing"},
		{"keyed hash", &tpm2.TPMTPublic{Type: tpm2.TPMAlgKeyedHash}, "type KEYEDHASH, expected RSA or ECC"},
		{"RSA keyBits mismatch", edit(k.aik, func(p *tpm2.TPMTPublic) { rsaParms(p).KeyBits = 3072 }), "modulus has 2048 bits but keyBits is 3072"},
		{"RSA even exponent", edit(k.aik, func(p *tpm2.TPMTPublic) { rsaParms(p).Exponent = 65536 }), "invalid public exponent 65536"},
		{"RSA exponent 1", edit(k.aik, func(p *tpm2.TPMTPublic) { rsaParms(p).Exponent = 1 }), "invalid public exponent 1"},
		{"ECC point off curve", edit(k.ecc, func(p *tpm2.TPMTPublic) { eccPoint(p).Y.Buffer[31] ^= 0x01 }), "invalid point on P-256"},
		{"ECC coordinate too long", edit(k.ecc, func(p *tpm2.TPMTPublic) {
			eccPoint(p).X.Buffer = append([]byte{1}, eccPoint(p).X.Buffer...)
		}), "longer than the 32 bytes of P-256"},
		{"ECC curve unsupported", edit(k.ecc, func(p *tpm2.TPMTPublic) {
			parms, err := p.Parameters.ECCDetail()
			if err != nil {
				t.Fatal(err)
			}
			parms.CurveID = tpm2.TPMECCBNP256
		}), "unsupported curve 0x0010"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PublicKey(tc.pub)
			if err == nil {
				t.Fatal("PublicKey succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("PublicKey error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestHashAndSchemeNames(t *testing.T) {
	for _, name := range []string{"SHA1", "SHA256", "SHA384", "SHA512"} {
		alg, hash, err := HashByName(name)
		if err != nil {
			t.Fatalf("HashByName(%q): %v", name, err)
		}
		if got, err := HashName(alg); err != nil || got != name {
			t.Errorf("HashName(%s) = %q, %v, want %q", algName(alg), got, err, name)
		}
		if !hash.Available() {
			t.Errorf("hash %v for %s is not linked in", hash, name)
		}
	}
	for _, name := range []string{"sha256", "SHA-256", "MD5", ""} {
		if _, _, err := HashByName(name); err == nil {
			t.Errorf("HashByName(%q) succeeded", name)
		}
	}

	for _, name := range []string{"RSASSA", "RSAPSS", "ECDSA"} {
		alg, err := SchemeByName(name)
		if err != nil {
			t.Fatalf("SchemeByName(%q): %v", name, err)
		}
		if got, err := SchemeName(alg); err != nil || got != name {
			t.Errorf("SchemeName(%s) = %q, %v, want %q", algName(alg), got, err, name)
		}
	}
	if _, err := SchemeByName("ECDAA"); err == nil {
		t.Error(`SchemeByName("ECDAA") succeeded`)
	}
}
