package tpm

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

func TestPublicCacheParsesChangedBytes(t *testing.T) {
	c := publicCache{entries: make(map[uint32]parsedPublic)}
	parses := 0
	parser := func(pub *tpm2.TPMTPublic) func() (*tpm2.TPMTPublic, error) {
		return func() (*tpm2.TPMTPublic, error) {
			parses++
			return pub, nil
		}
	}
	first := &tpm2.TPMTPublic{Type: tpm2.TPMAlgRSA}
	second := &tpm2.TPMTPublic{Type: tpm2.TPMAlgECC}

	got, err := c.parse(0x81000003, []byte{1, 2, 3}, parser(first))
	if err != nil || got != first {
		t.Fatalf("first parse = %v, %v; want the parsed public area", got, err)
	}
	got, err = c.parse(0x81000003, []byte{1, 2, 3}, parser(second))
	if err != nil || got != first {
		t.Errorf("parse of equal bytes = %v, %v; want the cached public area", got, err)
	}
	if parses != 1 {
		t.Errorf("equal bytes were parsed %d times, want once", parses)
	}

	got, err = c.parse(0x81000003, []byte{1, 2, 4}, parser(second))
	if err != nil || got != second {
		t.Errorf("parse of changed bytes = %v, %v; want a new parse", got, err)
	}
	if parses != 2 {
		t.Errorf("parsed %d times after the bytes changed, want 2", parses)
	}
}

func TestPublicCacheKeepsNoFailure(t *testing.T) {
	c := publicCache{entries: make(map[uint32]parsedPublic)}
	failure := errors.New("does not parse")
	_, err := c.parse(0x81000001, []byte{9}, func() (*tpm2.TPMTPublic, error) { return nil, failure })
	if !errors.Is(err, failure) {
		t.Fatalf("parse = %v, want the parser's error", err)
	}
	if len(c.entries) != 0 {
		t.Errorf("cache has %d entries after a failed parse, want 0", len(c.entries))
	}
}

func TestPublicCacheBounded(t *testing.T) {
	c := publicCache{entries: make(map[uint32]parsedPublic)}
	pub := &tpm2.TPMTPublic{}
	for h := range uint32(3 * maxPublicCache) {
		if _, err := c.parse(0x81000000+h, []byte{byte(h)}, func() (*tpm2.TPMTPublic, error) { return pub, nil }); err != nil {
			t.Fatal(err)
		}
		if len(c.entries) > maxPublicCache {
			t.Fatalf("cache has %d entries, over its bound of %d", len(c.entries), maxPublicCache)
		}
	}
}
