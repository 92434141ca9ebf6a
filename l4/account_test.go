package l4

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/lbctl/lbctl/backend"
	"github.com/lbctl/lbctl/internal/accesslog"
	"github.com/lbctl/lbctl/internal/eventually"
	"github.com/lbctl/lbctl/internal/logtest"
)

// Each connection ends in one access log line with its client, backend
// and bytes each way; a refused client's line names no backend. It runs
// on both engines (see TestPortableEngine).
func TestAccessLogLines(t *testing.T) {
	var out logtest.Buffer
	lg := accesslog.New(&out, 64)
	defer lg.Close(context.Background())
	tb := startBackend(t, "app-01")
	addr := serveProxy(t, newRegistry(t, tb.addr), func(p *Proxy) { p.AccessLog = lg })
	c := dialFrom(t, "127.0.0.41", addr)
	buf := make([]byte, len("app-01\nhello"))
	io.WriteString(c, "hello")
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "app-01\nhello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	c.Close()

	refusing, err := backend.NewRegistry([]*backend.Backend{backend.New("app-09", "127.0.0.1:1", 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr2 := serveProxy(t, refusing, func(p *Proxy) { p.AccessLog = lg })
	c2 := dialFrom(t, "127.0.0.42", addr2)
	io.ReadAll(c2)
	c2.Close()

	eventually.True(t, "two lines", func() bool { return lg.Written() == 2 && strings.Count(out.String(), "\n") == 2 })
	type line struct {
		Mode     string  `json:"mode"`
		Client   string  `json:"client"`
		Backend  *string `json:"backend"`
		BytesIn  int64   `json:"bytes_in"`
		BytesOut int64   `json:"bytes_out"`
	}
	// By client: the engines may end the two connections in either order.
	got := map[string]line{}
	for _, s := range out.Lines() {
		var l line
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("line %q: %v", s, err)
		}
		host, _, _ := strings.Cut(l.Client, ":")
		got[host] = l
	}
	if len(got) != 2 {
		t.Fatalf("lines of %d clients, want 2", len(got))
	}
	if l := got["127.0.0.41"]; l.Mode != "l4" || !strings.HasPrefix(l.Client, "127.0.0.41:") || l.Backend == nil || *l.Backend != "app-01" || l.BytesIn != 5 || l.BytesOut != 12 {
		t.Errorf("line of the served client: %+v", l)
	}
	if l := got["127.0.0.42"]; l.Mode != "l4" || !strings.HasPrefix(l.Client, "127.0.0.42:") || l.Backend != nil || l.BytesIn != 0 || l.BytesOut != 0 {
		t.Errorf("line of the refused client: %+v", l)
	}
}

// The proxy's counts add up the connections of every loop (and of the
// goroutine engine): accepted ones, and open ones until they end.
func TestCountsAddUpEveryConnection(t *testing.T) {
	tb := startBackend(t, "app-01")
	var p *Proxy
	addr := serveProxy(t, newRegistry(t, tb.addr), func(q *Proxy) { p = q })
	const n = 40
	conns := make([]*net.TCPConn, 0, n)
	for i := range n {
		c := dialFrom(t, fmt.Sprintf("127.0.3.%d", i+1), addr)
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "app-01\n" {
			t.Fatalf("client %d: greeting %q, %v", i, line, err)
		}
		conns = append(conns, c)
	}
	if got, open := p.Counts().Accepted(), p.Counts().Open(); got != n || open != n {
		t.Errorf("with %d connections open: %d accepted, %d open; want %d and %d", n, got, open, n, n)
	}
	for _, c := range conns {
		c.Close()
	}
	eventually.True(t, "every connection counted closed", func() bool { return p.Counts().Open() == 0 })
	if got := p.Counts().Accepted(); got != n {
		t.Errorf("%d accepted after the clients left, want %d", got, n)
	}
}
