package main

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// TestFlagValueExplained checks that a command-line value that does not
// parse gets the explanation that a --config file gives, in every command
// that parses its flags with cli.
func TestFlagValueExplained(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--shutdown-grace", "10", "--check"},
			`invalid value "10" for flag --shutdown-grace: a duration needs a unit, such as 10s or 1m`},
		{[]string{"serve", "--command-timeout", "soon", "--check"},
			`invalid value "soon" for flag --command-timeout: write a duration as a number and a unit, such as 30s`},
		{[]string{"serve", "--rate", "abc", "--check"}, `invalid value "abc" for flag --rate: it must be a number, such as 100 or 0.5`},
		{[]string{"serve", "--rate", "1e999", "--check"}, `invalid value "1e999" for flag --rate: it is out of range`},
		{[]string{"serve", "--max-conns", "abc", "--check"}, `invalid value "abc" for flag --max-conns: it must be a whole number`},
		{[]string{"serve", "--burst", "99999999999999999999", "--check"}, `for flag --burst: it is out of range`},
		{[]string{"serve", "--rate", "--check"}, "--rate needs a value before --check: it must be a number"},
		{[]string{"serve", "--check=maybe"}, `invalid value "maybe" for flag --check: use true or false`},
		{[]string{"bench", "--duration", "10"}, `invalid value "10" for flag --duration: a duration needs a unit`},
		{[]string{"bench", "--data-size", "x"}, `invalid value "x" for flag --data-size: it must be a whole number`},
		{[]string{"bench", "--settle", "2"}, `for flag --settle: a duration needs a unit`},
		{[]string{"getpub", "1", "--timeout", "5", "--connect", "unix:///nonexistent/v.sock"},
			`invalid value "5" for flag --timeout: a duration needs a unit, such as 10s or 1m`},
		{[]string{"getpub", "1", "--format", "--connect", "unix:///nonexistent/v.sock"}, "--format needs a value before --connect: use json, raw or pem"},
		{[]string{"demo", "--verbose=maybe"}, `invalid value "maybe" for flag --verbose: use true or false`},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != exitUsage {
			t.Errorf("%q: exit status %d; want %d", tc.args, code, exitUsage)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: error %q does not contain %q", tc.args, stderr.String(), tc.want)
		}
		if strings.Contains(stderr.String(), "parse error") {
			t.Errorf("%q: error %q gives package flag's bare cause", tc.args, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("%q: standard output %q; want nothing", tc.args, stdout.String())
		}
	}
}

// TestConfigValueExplained checks that a --config file and the command line
// explain one mistake in the same words.
func TestConfigValueExplained(t *testing.T) {
	config := writeTemp(t, t.TempDir(), "config.yaml", []byte("shutdown-grace: 10\n"))
	var fromFile, fromFlag bytes.Buffer
	run([]string{"serve", "--config", config, "--check"}, io.Discard, &fromFile)
	run([]string{"serve", "--shutdown-grace", "10", "--check"}, io.Discard, &fromFlag)

	const want = "a duration needs a unit, such as 10s or 1m"
	if !strings.Contains(fromFile.String(), want) {
		t.Errorf("config file error %q does not contain %q", fromFile.String(), want)
	}
	if !strings.Contains(fromFlag.String(), want) {
		t.Errorf("command-line error %q does not contain %q", fromFlag.String(), want)
	}
}

// TestNumericFlagsStateRange checks that the help of every duration and
// number flag of serve and bench states the values it takes: what 0 means
// where 0 is allowed, or the least value where it is not.
func TestNumericFlagsStateRange(t *testing.T) {
	serve, _ := newServeCLI()
	bench, _ := newBenchCLI()
	ranges := []string{"above 0", "at least 1", "0 for ", "0 cuts ", "0 reads ", "from 0 to "}
	for _, c := range []*cli{serve, bench} {
		c.fs.VisitAll(func(fl *flag.Flag) {
			getter, ok := fl.Value.(flag.Getter)
			if !ok {
				return
			}
			switch getter.Get().(type) {
			case time.Duration, int, float64:
			default:
				return
			}
			stated := false
			for _, r := range ranges {
				stated = stated || strings.Contains(fl.Usage, r)
			}
			if !stated {
				t.Errorf("%s --%s: help %q does not state the values it takes", c.name, fl.Name, fl.Usage)
			}
		})
	}
}

// TestServeRejectsOutOfRange checks that serve rejects a duration or
// number out of its flag's range with a usage error that names the flag,
// and accepts 0 where the help states what it means.
func TestServeRejectsOutOfRange(t *testing.T) {
	for _, args := range [][]string{
		{"--command-timeout", "0s"},
		{"--command-timeout", "-5s"},
		{"--shutdown-grace", "-5s"},
		{"--rate", "NaN"},
		{"--rate", "Inf"},
	} {
		var stderr bytes.Buffer
		code := run(append([]string{"serve", "--check", "--listen", "unix:///run/vcomlink/v.sock"}, args...), io.Discard, &stderr)
		if code != exitUsage {
			t.Errorf("%q: exit status %d; want %d", args, code, exitUsage)
		}
		if want := "invalid " + args[0] + " "; !strings.Contains(stderr.String(), want) {
			t.Errorf("%q: error %q does not contain %q", args, stderr.String(), want)
		}
	}

	for _, args := range [][]string{
		{"--shutdown-grace", "0s"},
		{"--rate", "0"},
		{"--max-conns", "0"},
		{"--max-conns-per-peer", "0"},
	} {
		var stderr bytes.Buffer
		code := run(append([]string{"serve", "--check", "--listen", "unix:///run/vcomlink/v.sock"}, args...), io.Discard, &stderr)
		if code != exitOK {
			t.Errorf("%q: exit status %d; want %d\n%s", args, code, exitOK, stderr.String())
		}
	}
}

// TestBenchRejectsOutOfRange checks bench's duration and number flags
// that must be above 0, or must not be negative.
func TestBenchRejectsOutOfRange(t *testing.T) {
	for _, args := range [][]string{
		{"--duration", "0s"},
		{"--call-timeout", "0s"},
		{"--call-timeout", "-1s"},
		{"--raw-timeout", "0s"},
		{"--settle", "-1s"},
		{"--agent-pid", "-1"},
		{"--idle", "-1"},
		{"--data-size", "-1"},
	} {
		var stderr bytes.Buffer
		code := run(append([]string{"bench", "--connect", "unix:///nonexistent/v.sock"}, args...), io.Discard, &stderr)
		if code != exitUsage {
			t.Errorf("%q: exit status %d; want %d", args, code, exitUsage)
		}
		if want := "invalid " + args[0] + " "; !strings.Contains(stderr.String(), want) {
			t.Errorf("%q: error %q does not contain %q", args, stderr.String(), want)
		}
	}
}
