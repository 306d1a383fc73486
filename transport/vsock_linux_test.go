package transport

import (
	"os"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
)

// vsockLoopback reports whether the kernel routes vsock connections to the
// local CID back to this host (CONFIG_VSOCKETS_LOOPBACK). Without it, an
// end-to-end test would have to dial another machine's CID.
func vsockLoopback() bool {
	_, err := os.Stat("/sys/module/vsock_loopback")
	return err == nil
}

func TestVsockListenerBinds(t *testing.T) {
	if _, err := os.Stat("/dev/vsock"); err != nil {
		t.Skip("AF_VSOCK is not available on this machine (no /dev/vsock)")
	}
	l, err := Listen("vsock://:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*vsock.Addr)
	if !ok {
		t.Fatalf("listener address is %T; want *vsock.Addr", l.Addr())
	}
	if addr.ContextID != AnyCID {
		t.Errorf("bound to CID %d; want any CID", addr.ContextID)
	}
	if addr.Port == 0 {
		t.Errorf("bound to port 0")
	}
}

// TestVsockEndToEnd connects to a vsock listener through the kernel's
// loopback transport, the only vsock peer a test may dial, and checks the
// peer's CID.
func TestVsockEndToEnd(t *testing.T) {
	if !vsockLoopback() {
		t.Skip("the kernel has no vsock loopback transport (CONFIG_VSOCKETS_LOOPBACK, module vsock_loopback), so a vsock connection to this host cannot be made here")
	}
	l, err := Listen("vsock://:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer l.Close()
	port := l.Addr().(*vsock.Addr).Port

	const localCID = 1 // VMADDR_CID_LOCAL, served by the loopback transport
	go func() {
		c, err := vsock.Dial(localCID, port, nil)
		if err == nil {
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, _ := PeerOf(c)
	if peer.Network != "vsock" || peer.CID != localCID {
		t.Errorf("peer %+v; want vsock CID %d", peer, localCID)
	}
}
