package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/vcomlink/vcomlink/api/vcom"
)

// maxInputSize bounds every input file that a command reads, in bytes. The
// largest inputs are data to sign, which the agent limits to its 64 KiB
// request body, and JSON of a certification, a few KiB.
const maxInputSize = 1 << 20

// readInput reads the file that flag names, or standard input for "-". A
// missing flag, an unreadable file and a file over maxInputSize are usage
// errors.
func readInput(flag, path string) ([]byte, error) {
	if path == "" {
		return nil, usagef("missing --%s FILE", flag)
	}

	var r io.Reader = os.Stdin
	name := "standard input"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usagef("--%s: %v", flag, err)
		}
		defer f.Close()
		r, name = f, path
	}

	data, err := io.ReadAll(io.LimitReader(r, maxInputSize+1))
	if err != nil {
		return nil, usagef("--%s: reading %s: %v", flag, name, err)
	}
	if len(data) > maxInputSize {
		return nil, usagef("--%s: %s is larger than the limit of %d bytes", flag, name, maxInputSize)
	}
	return data, nil
}

// parseHex parses the hexadecimal value of flag, with or without a 0x
// prefix. An empty value is no bytes.
func parseHex(flag, s string) ([]byte, error) {
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	b, err := hex.DecodeString(digits)
	if err != nil {
		return nil, usagef("invalid --%s %q: write bytes as an even number of hex digits, such as 0a1b2c", flag, s)
	}
	return b, nil
}

// Handle types of TPM 2.0 Part 2 (TPM_HT), the top byte of a handle, that
// guests use.
const (
	handleTypeNVIndex    = 0x01
	handleTypePersistent = 0x81
)

// Example handles for messages about invalid handles.
const (
	exampleKeyHandle = vcom.HandleAIK
	exampleNVIndex   = vcom.HandleEKCert
)

// parseHandleArg parses the positional argument that names a TPM handle,
// with parseHandle. example is a handle of the type the command expects.
func parseHandleArg(argument string, example uint32, s string) (uint32, error) {
	h, err := parseHandle(s, example)
	if err != nil {
		return 0, usagef("invalid %s %q: %v", argument, s, err)
	}
	return h, nil
}

// parseHandle parses a TPM handle in hex with a 0x prefix or in decimal.
// It rejects a decimal value that is neither a persistent nor an NV handle
// when the same digits read as hex would be one, such as 81000003, because
// that value is almost surely a hex handle whose 0x was left out. example
// is a handle of the type the caller expects, for the messages.
func parseHandle(s string, example uint32) (uint32, error) {
	hasPrefix := strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X")
	asHex, hexErr := strconv.ParseUint(s, 16, 32)
	looksHex := !hasPrefix && hexErr == nil

	h, err := vcom.ParseHandle(s)
	if err != nil {
		if looksHex {
			return 0, fmt.Errorf("write hex handles with 0x, as 0x%08x", asHex)
		}
		return 0, fmt.Errorf("write it in hex as 0x%08x or in decimal", example)
	}

	if looksHex && !isGuestHandle(h) && isGuestHandle(uint32(asHex)) {
		return 0, fmt.Errorf("it was read as decimal (0x%08x), which is neither a persistent nor an NV handle: "+
			"write hex handles with 0x, as 0x%08x", h, asHex)
	}
	return h, nil
}

// isGuestHandle reports whether h is a persistent handle or an NV index,
// the two handle types that the guest operations take.
func isGuestHandle(h uint32) bool {
	handleType := h >> 24
	return handleType == handleTypePersistent || handleType == handleTypeNVIndex
}

// writeFile writes data to path. A new file gets mode 0644, and an existing
// one is truncated.
func writeFile(flag, path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	return nil
}
