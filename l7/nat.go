package l7

import "net"

// countSession counts, for the NAT view, the request in progress as the
// start of a persistence session from the client's address and port: it
// came without a usable cookie, so its answer will carry a new one. It is
// counted before the request goes anywhere, as L4 counts a connection at
// accept, so that the order in which sources are first seen is the order
// in which a selector meets them.
func (s *session) countSession() {
	if s.p.NAT == nil {
		return
	}
	if a, ok := s.client.RemoteAddr().(*net.TCPAddr); ok {
		s.p.NAT.Session(a.AddrPort())
	}
}
