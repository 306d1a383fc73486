package tpm

import (
	"context"
	"fmt"
)

// ErrGuestGone is the error of a request whose guest closed its connection
// while the request waited for its turn at the TPM. The request is dropped
// before it reaches the TPM.
var ErrGuestGone = fmt.Errorf("the guest closed its connection while the request waited for the TPM: %w", context.Canceled)

// HangupWatch starts watching the connection of a request that waits for
// the TPM, and calls gone if the guest closes it. stop ends the watch and
// returns once the watch no longer reads the connection.
type HangupWatch func(gone func()) (stop func())

type hangupKey struct{}

// WithHangupWatch returns a context that carries watch. A request of that
// context that must queue for the TPM is watched while it waits, and
// dropped if the guest goes away. A request that runs at once is not
// watched.
func WithHangupWatch(ctx context.Context, watch HangupWatch) context.Context {
	return context.WithValue(ctx, hangupKey{}, watch)
}

// watchHangup starts the watch that ctx carries, if any. It returns a
// context that ends when the guest goes away, and the function that stops
// the watch.
func watchHangup(ctx context.Context) (context.Context, func()) {
	watch, ok := ctx.Value(hangupKey{}).(HangupWatch)
	if !ok {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := watch(func() { cancel(ErrGuestGone) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}
