package load

import (
	"fmt"
	"strings"
)

// firstRequestError is the failure of guests to complete the request that
// each sends before a measurement, so that its connection is open. Its
// message is one line that names each distinct cause once.
type firstRequestError struct {
	kind   string  // the kind of guest, as "guest" or "idle guest"
	guests int     // guests that sent a first request
	errs   []error // the failures, one per guest that failed
}

// firstRequestsFailed returns a *firstRequestError for the guests whose
// entry in errs is not nil, or nil if there are none.
func firstRequestsFailed(kind string, errs []error) error {
	e := &firstRequestError{kind: kind, guests: len(errs)}
	for _, err := range errs {
		if err != nil {
			e.errs = append(e.errs, err)
		}
	}
	if len(e.errs) == 0 {
		return nil
	}
	return e
}

// Error returns, for example, "8 of 8 guests failed their first request:
// MESSAGE". With several distinct messages, each follows the number of
// guests that got it, as in "6 guests: MESSAGE; 2 guests: MESSAGE".
func (e *firstRequestError) Error() string {
	var messages []string
	count := make(map[string]int)
	for _, err := range e.errs {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		if count[msg] == 0 {
			messages = append(messages, msg)
		}
		count[msg]++
	}

	var b strings.Builder
	pronoun := "their"
	if len(e.errs) == 1 {
		pronoun = "its"
	}
	fmt.Fprintf(&b, "%d of %s failed %s first request: ", len(e.errs), e.formatGuests(e.guests), pronoun)
	if len(messages) == 1 {
		b.WriteString(messages[0])
		return b.String()
	}
	listed := min(len(messages), maxErrorSamples)
	for i, msg := range messages[:listed] {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", e.formatGuests(count[msg]), msg)
	}
	if rest := len(messages) - listed; rest > 0 {
		fmt.Fprintf(&b, "; and %d other messages", rest)
	}
	return b.String()
}

// formatGuests formats n guests of e's kind, as "1 guest" or "8 guests".
func (e *firstRequestError) formatGuests(n int) string {
	if n == 1 {
		return "1 " + e.kind
	}
	return fmt.Sprintf("%d %ss", n, e.kind)
}

// Unwrap returns the failure of each guest, so that errors.As finds their
// causes.
func (e *firstRequestError) Unwrap() []error {
	return e.errs
}
