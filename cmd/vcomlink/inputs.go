package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
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

// parseHandleArg parses the positional argument that names a TPM handle.
func parseHandleArg(argument, s string) (uint32, error) {
	h, err := vcom.ParseHandle(s)
	if err != nil {
		return 0, usagef("invalid %s %q: write it in hex as 0x81000003 or in decimal", argument, s)
	}
	return h, nil
}

// writeFile writes data to path. A new file gets mode 0644, and an existing
// one is truncated.
func writeFile(flag, path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	return nil
}
