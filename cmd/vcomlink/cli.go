package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vcomlink/vcomlink/client"
)

// Exit statuses of the guest commands, besides exitOK, exitFailure and
// exitUsage.
const (
	// exitRefused is a request that the agent rejected with a status other
	// than 200.
	exitRefused = 3
	// exitTransport is a request that did not reach the agent, or whose
	// response did not come back.
	exitTransport = 4
)

// exitKeyOut is the exit status of verify-certify when the check passed but
// --key-out could not be written.
const exitKeyOut = 3

// guestExitStatuses and verifierExitStatuses end the help of the guest and
// the verifier commands.
const (
	guestExitStatuses = `Exit status: 0 success; 1 any other failure, such as a response that does
not parse; 2 invalid command line or input; 3 the agent rejected the request
(its message goes to standard error); 4 the agent could not be reached.`

	verifierExitStatuses = `Exit status: 0 verified; 1 verification failed (the reason goes to standard
error); 2 invalid command line or input.`
)

// usageError is a command line or input file that a command cannot use.
// The command exits with exitUsage.
type usageError struct {
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// verificationError is a check of a verifier command that failed. The
// command exits with exitFailure.
type verificationError struct {
	err error
}

func (e *verificationError) Error() string { return "verification failed: " + e.err.Error() }

func (e *verificationError) Unwrap() error { return e.err }

// cli parses the command line of one guest or verifier command and prints
// its help.
type cli struct {
	name    string // as in "vcomlink NAME"
	args    string // the positional arguments in the usage line
	about   string // what the command does, printed under the usage line
	details string // printed after the flags: formats and exit statuses
	minArgs int    // the minimum number of positional arguments
	maxArgs int    // the maximum number of positional arguments
	fs      *flag.FlagSet
}

// newCLI returns the command line of a command that takes nargs positional
// arguments. A command whose arguments may be left out sets minArgs.
func newCLI(name, args string, nargs int, about, details string) *cli {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &cli{name: name, args: args, minArgs: nargs, maxArgs: nargs, about: about, details: details, fs: fs}
}

// isSet reports whether the command line set the flag name.
func (c *cli) isSet(name string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// run parses args and calls body with the positional arguments. It prints
// the help for -h or --help, and the error that parse or body returns, as
// one line, and returns the exit status.
func (c *cli) run(args []string, stdout, stderr io.Writer, body func(positional []string) error) int {
	positional, status, ok := c.start(args, stdout, stderr)
	if !ok {
		return status
	}
	if err := body(positional); err != nil {
		return c.printError(stderr, err)
	}
	return exitOK
}

// start parses args for a command that reports its own result, as the
// demo does. When ok is false, start has printed the help for -h or
// --help, or the usage error, and the command ends with status.
func (c *cli) start(args []string, stdout, stderr io.Writer) (positional []string, status int, ok bool) {
	positional, err := c.parse(args)
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(stdout)
		return nil, exitOK, false
	}
	if err != nil {
		return nil, c.printError(stderr, err), false
	}
	return positional, exitOK, true
}

// printError prints err as one line and returns its exit status.
func (c *cli) printError(stderr io.Writer, err error) int {
	message := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(stderr, "vcomlink %s: %s\n", c.name, message)
	return exitStatus(err)
}

// exitStatus returns the exit status for an error of a command.
func exitStatus(err error) int {
	var usage *usageError
	var keyOut *keyOutError
	var status *client.StatusError
	var transport *client.TransportError
	switch {
	case errors.As(err, &usage):
		return exitUsage
	case errors.As(err, &keyOut):
		return exitKeyOut
	case errors.As(err, &status):
		return exitRefused
	case errors.As(err, &transport):
		return exitTransport
	default:
		return exitFailure
	}
}

// parse parses flags placed before, between or after the positional
// arguments, as in "getpub 0x81000003 --format pem", and checks the number
// of positional arguments. Arguments after "--" are all positional.
func (c *cli) parse(args []string) ([]string, error) {
	var positional []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s (see vcomlink %s --help)", c.flagErrorText(err.Error(), args), c.name)
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}

	if len(positional) < c.minArgs || len(positional) > c.maxArgs {
		if c.maxArgs == 0 {
			return nil, usagef("unexpected argument %q (see vcomlink %s --help)", positional[0], c.name)
		}
		return nil, usagef("expected %s, got %d arguments (see vcomlink %s --help)", c.args, len(positional), c.name)
	}
	return positional, nil
}

// flagErrorText rewrites an error of package flag for the help's two-dash
// flag names. An unknown flag is quoted as the command line wrote it, so
// that "-v" is not reported as "--v". A value that does not parse gets the
// explanation that a --config file gives.
func (c *cli) flagErrorText(message string, args []string) string {
	const unknown = "flag provided but not defined: -"
	if name, ok := strings.CutPrefix(message, unknown); ok {
		for _, arg := range args {
			typed, _, _ := strings.Cut(arg, "=")
			if strings.TrimLeft(typed, "-") == name && strings.HasPrefix(typed, "-") {
				return fmt.Sprintf("unknown flag %s", typed)
			}
		}
		return "unknown flag --" + name
	}
	if text, ok := c.invalidValueText(message); ok {
		return text
	}
	return doubleDash(message)
}

// invalidValueText explains the cause in package flag's message for a
// value that a flag's Set rejected. A value that is itself a flag, as in
// "--rate --check", means that the value was left out. ok is false for any
// other message.
func (c *cli) invalidValueText(message string) (text string, ok bool) {
	rest, ok := strings.CutPrefix(message, "invalid value ")
	if !ok {
		rest, ok = strings.CutPrefix(message, "invalid boolean value ")
	}
	if !ok {
		return "", false
	}
	quoted, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", false
	}
	value, err := strconv.Unquote(quoted)
	if err != nil {
		return "", false
	}
	rest = strings.TrimPrefix(rest[len(quoted):], " for ")
	rest = strings.TrimPrefix(rest, "flag ")
	name, cause, ok := strings.Cut(strings.TrimPrefix(rest, "-"), ": ")
	fl := c.fs.Lookup(name)
	if !ok || fl == nil {
		return "", false
	}

	explained := explainValueError(fl, value, errors.New(cause))
	if c.isFlagName(value) {
		return fmt.Sprintf("--%s needs a value before %s: %v", name, value, explained), true
	}
	return fmt.Sprintf("invalid value %q for flag --%s: %v", value, name, explained), true
}

// isFlagName reports whether arg is written as a flag of this command, such
// as "--check" or "-h".
func (c *cli) isFlagName(arg string) bool {
	if !strings.HasPrefix(arg, "-") {
		return false
	}
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return c.fs.Lookup(name) != nil || name == "h" || name == "help"
}

// doubleDash rewrites the flag names in an error of package flag, which
// writes them with one dash, in the two-dash form of the help.
func doubleDash(message string) string {
	for _, prefix := range []string{"for flag -", "defined: -", "argument: -"} {
		message = strings.Replace(message, prefix, prefix+"-", 1)
	}
	return message
}

// printHelp prints the usage line, the description, every flag with its
// default, and the details.
func (c *cli) printHelp(w io.Writer) {
	usage := "vcomlink " + c.name
	if c.args != "" {
		usage += " " + c.args
	}
	hasFlags := false
	c.fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", usage, c.about)
	} else {
		fmt.Fprintf(w, "Usage: %s [flags]\n\n%s\n\nFlags:\n", usage, c.about)
	}
	c.fs.VisitAll(func(f *flag.Flag) {
		valueName, text := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if valueName != "" {
			line += " " + valueName
		}
		fmt.Fprintln(w, line)
		if f.DefValue != "" && f.DefValue != "false" {
			text += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		writeWrapped(w, "      ", text)
	})
	if c.details != "" {
		fmt.Fprintf(w, "\n%s\n", c.details)
	}
}

// helpWidth is the width, in columns, at which printHelp wraps the
// explanations of flags.
const helpWidth = 78

// writeWrapped writes text in lines of at most helpWidth columns, each
// beginning with indent. A word longer than a line gets a line of its own.
func writeWrapped(w io.Writer, indent, text string) {
	line := indent
	for _, word := range strings.Fields(text) {
		if line != indent && len(line)+1+len(word) > helpWidth {
			fmt.Fprintln(w, line)
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	fmt.Fprintln(w, line)
}

// choiceFlag is a flag whose value is one of a fixed list.
type choiceFlag struct {
	value   string
	choices []string
}

func newChoiceFlag(choices ...string) *choiceFlag {
	return &choiceFlag{value: choices[0], choices: choices}
}

func (f *choiceFlag) String() string {
	if f == nil {
		return ""
	}
	return f.value
}

func (f *choiceFlag) Set(v string) error {
	for _, c := range f.choices {
		if v == c {
			f.value = v
			return nil
		}
	}
	return fmt.Errorf("use %s", joinChoices(f.choices))
}

// countOf writes n with the singular or the plural noun, as "1 listener"
// or "2 listeners".
func countOf(n int, singular, plural string) string {
	if n == 1 {
		return "1 " + singular
	}
	return fmt.Sprintf("%d %s", n, plural)
}

// joinChoices writes choices as "a, b or c".
func joinChoices(choices []string) string {
	if len(choices) == 1 {
		return choices[0]
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}
