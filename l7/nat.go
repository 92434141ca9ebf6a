package l7

import "net"

// countSession counts, for the NAT view, the new cookie the request in
// progress got: one new persistence session from the client's address and
// port.
func (s *session) countSession() {
	if s.p.NAT == nil {
		return
	}
	if a, ok := s.client.RemoteAddr().(*net.TCPAddr); ok {
		s.p.NAT.Session(a.AddrPort())
	}
}
