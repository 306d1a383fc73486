package transport

import (
	"net"

	"github.com/mdlayher/vsock"
)

func listenVsock(cid, port uint32) (net.Listener, error) {
	return vsock.ListenContextID(cid, port, nil)
}

func vsockCID(addr net.Addr) uint32 {
	if a, ok := addr.(*vsock.Addr); ok {
		return a.ContextID
	}
	return 0
}
