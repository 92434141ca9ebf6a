package l7

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
)

// TestProtocolSwitchOnlyToWhatTheClientOffered: a 101 is relayed only when
// the client asked to upgrade, to a protocol it listed; otherwise the
// client gets 502, the backend connection is closed, and the backend is
// not counted down (any client could provoke such a switch).
func TestProtocolSwitchOnlyToWhatTheClientOffered(t *testing.T) {
	const ask = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "
	for _, tt := range []struct {
		name, request, upgrade string
		status                 int
	}{
		{"offered", ask + "websocket\r\n\r\n", "websocket", 101},
		{"offered, other case, among others", ask + "foo/2, WebSocket\r\n\r\n", "websocket", 101},
		{"other protocol", ask + "websocket\r\n\r\n", "h2c", 502},
		{"one of two not offered", ask + "websocket\r\n\r\n", "websocket, h2c", 502},
		{"no Upgrade in the 101", ask + "websocket\r\n\r\n", "", 502},
		{"not asked", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", "websocket", 502},
		{"after a body", "POST /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi", "websocket", 502},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backendSaw := make(chan error, 1)
			addr := scriptedBackend(t, func(c net.Conn) {
				head := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
				if tt.upgrade != "" {
					head += "Upgrade: " + tt.upgrade + "\r\n"
				}
				io.WriteString(c, head+"\r\n")
				_, err := io.Copy(c, c) // echo as a tunnel would, until lbctl closes
				backendSaw <- err
			})
			proxy, b := healthFixture(t, addr, nil)
			c := dialProxy(t, proxy)
			io.WriteString(c, tt.request)
			r := bufio.NewReader(c)
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 101 {
				io.WriteString(c, "ping")
				buf := make([]byte, 4)
				if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "ping" {
					t.Errorf("tunnel echoed %q, %v", buf, err)
				}
				return
			}
			// Closed (EOF, or a reset if an echo crossed the close), not
			// left open until the backend's own deadline.
			if err := <-backendSaw; errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("backend connection: %v, want it closed by lbctl", err)
			}
			if !b.Available() {
				t.Error("backend marked down for a protocol switch")
			}
		})
	}
}
