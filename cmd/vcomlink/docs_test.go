package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// logKey matches the key of each field of a line of the text log format.
var logKey = regexp.MustCompile(` ([a-z_]+)=`)

// TestAttestationGuideLog checks that the agent's log lines that
// docs/attestation.md shows have the fields, in order, of the lines that
// the agent prints at start.
func TestAttestationGuideLog(t *testing.T) {
	guide, err := os.ReadFile("../../docs/attestation.md")
	if err != nil {
		t.Fatal(err)
	}
	p := startServe(t, "--tpm", "simulator")
	waitForLog(t, p, `msg="vcomlink serving"`, 1)
	log := strings.Split(p.log.String(), "\n")

	lines := 0
	for _, line := range strings.Split(string(guide), "\n") {
		_, msg, ok := strings.Cut(line, " msg=")
		if !ok || !strings.HasPrefix(line, "time=") {
			continue
		}
		msg, _, _ = strings.Cut(msg, `" `)
		msg += `"`
		lines++

		i := slices.IndexFunc(log, func(l string) bool { return strings.Contains(l, " msg="+msg) })
		if i < 0 {
			t.Errorf("the guide shows a log line %s that the agent does not print", msg)
			continue
		}
		if got, want := logKeys(log[i]), logKeys(line); !slices.Equal(got, want) {
			t.Errorf("log line %s: the agent prints the fields %q, the guide shows %q", msg, got, want)
		}
	}
	if lines == 0 {
		t.Error("the guide shows no log lines")
	}
	if code := p.stop(t); code != exitOK {
		t.Errorf("exit status %d after SIGTERM; want 0", code)
	}
}

// logKeys returns the keys of the fields of a text log line, in order.
func logKeys(line string) []string {
	var keys []string
	for _, m := range logKey.FindAllStringSubmatch(line, -1) {
		keys = append(keys, m[1])
	}
	return keys
}
