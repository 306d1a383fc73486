package vcom

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseHandle parses a TPM handle written in hex with a 0x prefix
// ("0x81000003") or in decimal ("2164260867").
func ParseHandle(s string) (uint32, error) {
	base, digits := 10, s
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		base, digits = 16, s[2:]
	}
	v, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid handle %q: write it in hex as 0x81000003 or in decimal", s)
	}
	return uint32(v), nil
}
