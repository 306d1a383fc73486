package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// stringList is a flag that may be given several times.
type stringList struct {
	values []string
	set    bool // false while values holds the default
}

func (l *stringList) String() string { return strings.Join(l.values, ",") }

func (l *stringList) Set(v string) error {
	if !l.set {
		l.values = nil
		l.set = true
	}
	l.values = append(l.values, v)
	return nil
}

// handleFlag is a flag that holds a persistent handle in hex or decimal,
// as parseHandle reads it.
type handleFlag uint32

func (h *handleFlag) String() string { return fmt.Sprintf("0x%08x", uint32(*h)) }

func (h *handleFlag) Set(v string) error {
	parsed, err := parseHandle(v, exampleKeyHandle)
	if err != nil {
		return err
	}
	*h = handleFlag(parsed)
	return nil
}

// durationFlag is a flag that holds a time.Duration, such as 30s, and
// rejects a value with the explanation of durationSyntaxError.
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(v string) error {
	parsed, err := time.ParseDuration(v)
	if err != nil {
		return durationSyntaxError(v)
	}
	*d = durationFlag(parsed)
	return nil
}

// explainValueError rewords package flag's bare "parse error" and "value
// out of range" for the flag types whose syntax a writer may not know. The
// command line and a --config file give the same explanation.
func explainValueError(fl *flag.Flag, value string, err error) error {
	if b, ok := fl.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return errors.New("use true or false")
	}
	getter, ok := fl.Value.(flag.Getter)
	if !ok {
		return err
	}
	switch getter.Get().(type) {
	case time.Duration:
		return durationSyntaxError(value)
	case int:
		if _, err := strconv.ParseInt(value, 0, strconv.IntSize); errors.Is(err, strconv.ErrRange) {
			return errors.New("it is out of range")
		}
		return errors.New("it must be a whole number")
	case float64:
		if _, err := strconv.ParseFloat(value, 64); errors.Is(err, strconv.ErrRange) {
			return errors.New("it is out of range")
		}
		return errors.New("it must be a number, such as 100 or 0.5")
	}
	return err
}

// durationSyntaxError explains how to write a duration, for a value that
// time.ParseDuration rejects.
func durationSyntaxError(value string) error {
	if _, err := strconv.ParseFloat(value, 64); err == nil {
		return errors.New("a duration needs a unit, such as 10s or 1m")
	}
	return errors.New("write a duration as a number and a unit, such as 30s, 1.5m or 1m30s")
}

// Hierarchy handles that --auth accepts by name.
var hierarchyNames = map[string]uint32{
	"owner":       0x40000001,
	"endorsement": 0x4000000B,
	"platform":    0x4000000C,
	"lockout":     0x4000000A,
}

// authFlag collects --auth HANDLE=FILE values: the auth value of a handle,
// read from a file so that it never appears in the process list.
type authFlag map[uint32][]byte

func (a authFlag) String() string { return "" }

func (a authFlag) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	if !ok || path == "" {
		return fmt.Errorf("write HANDLE=FILE, such as 0x81000005=/etc/vcomlink/ecdh.auth")
	}
	h, known := hierarchyNames[name]
	if !known {
		var err error
		if h, err = parseHandle(name, exampleKeyHandle); err != nil {
			return fmt.Errorf("HANDLE %q: %v, or one of owner, endorsement, platform", name, err)
		}
	}
	value, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read the auth value: %v", err)
	}
	a[h] = bytes.TrimSuffix(value, []byte("\n"))
	return nil
}
