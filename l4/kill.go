package l4

import (
	"net"

	"github.com/lbctl/lbctl/backend"
)

// CloseConns closes every open connection to the backend named id, on
// either engine: the relay ends at once for both its client and the
// backend, as an operator asks when a backend goes into maintenance at
// once (maint --kill). Connections still being dialled to it are closed
// too. Clients that reconnect are placed by the usual rules: a backend in
// maintenance keeps no pinned client.
//
// CloseConns returns once the closes are under way: the portable engine's
// connections are closed before it returns, the event loops close theirs
// at their next wake, which it triggers.
func (p *Proxy) CloseConns(id string) {
	p.relaysMu.Lock()
	for client, r := range p.relays {
		if r.b.ID == id {
			client.Close()
			r.server.Close()
		}
	}
	p.relaysMu.Unlock()

	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.loops {
		l.closeConnsLater(id)
	}
}

// relay is an open connection of the portable engine: its backend
// connection and the backend.
type relay struct {
	server *net.TCPConn
	b      *backend.Backend
}

// track records client's relay to b over server, so that CloseConns finds
// it, until untrack.
func (p *Proxy) track(client, server *net.TCPConn, b *backend.Backend) {
	p.relaysMu.Lock()
	defer p.relaysMu.Unlock()
	if p.relays == nil {
		p.relays = make(map[*net.TCPConn]relay)
	}
	p.relays[client] = relay{server: server, b: b}
}

// untrack forgets the relay of client.
func (p *Proxy) untrack(client *net.TCPConn) {
	p.relaysMu.Lock()
	defer p.relaysMu.Unlock()
	delete(p.relays, client)
}
