// Command tlsload drives a TLS front door with one HTTP/1.1 request per
// connection, so one TLS 1.3 handshake per request, and prints the completed
// handshakes per second. bench/peers/run.sh uses it for the
// "l7-tls-handshake" (full handshakes) and "l7-tls-resume" (handshakes
// resumed from a session ticket) workloads.
//
// wrk cannot measure full handshakes: it keeps each connection's TLS
// session across its reconnections, so that after the first one every
// handshake it makes is resumed.
//
// -groups sets the key exchanges the client offers, in order, with a key
// share for the first: "x25519" is what OpenSSL 3.0 clients (curl, wrk on
// Debian 12) send first, "mlkem,x25519" what current browsers send.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18000", "proxy address")
	conns := flag.Int("conns", 64, "connections in flight")
	duration := flag.Duration("duration", 5*time.Second, "how long to run")
	resume := flag.Bool("resume", false, "resume each connection's previous session from its ticket")
	groups := flag.String("groups", "x25519", "key exchanges offered, comma-separated: x25519, p256, mlkem (X25519MLKEM768)")
	cookie := flag.String("cookie", "SERVERID=app-01", "Cookie field of each request; empty for none")
	flag.Parse()
	var curves []tls.CurveID
	for g := range strings.SplitSeq(*groups, ",") {
		switch strings.TrimSpace(g) {
		case "x25519":
			curves = append(curves, tls.X25519)
		case "p256":
			curves = append(curves, tls.CurveP256)
		case "mlkem":
			curves = append(curves, tls.X25519MLKEM768)
		default:
			fmt.Fprintf(os.Stderr, "tlsload: -groups: %q is not x25519, p256 or mlkem\n", g)
			os.Exit(2)
		}
	}

	req := "GET / HTTP/1.1\r\nHost: lbctl\r\nConnection: close\r\n"
	if *cookie != "" {
		req += "Cookie: " + *cookie + "\r\n"
	}
	reqBytes := []byte(req + "\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	// running reports whether the run is still on; see srcload for why
	// the deadline is read rather than the context's error.
	end, _ := ctx.Deadline()
	running := func() bool { return time.Now().Before(end) }
	var done, resumed, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range *conns {
		wg.Go(func() {
			conf := &tls.Config{
				InsecureSkipVerify: true,
				MinVersion:         tls.VersionTLS13,
				CurvePreferences:   curves,
				NextProtos:         []string{"http/1.1"},
			}
			if *resume {
				// One session per connection in flight, as wrk keeps one.
				conf.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			buf := make([]byte, 4096)
			for running() {
				d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: conf}
				nc, err := d.DialContext(ctx, "tcp", *addr)
				if err != nil {
					if running() {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				c := nc.(*tls.Conn)
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Write(reqBytes)
				// The status code is checked; the rest is read to the end.
				var head [12]byte
				if err == nil {
					_, err = io.ReadFull(c, head[:])
				}
				n := 0
				for err == nil {
					var m int
					m, err = c.Read(buf)
					n += m
				}
				didResume := c.ConnectionState().DidResume
				c.Close()
				ok := err == io.EOF && string(head[9:]) == "200"
				switch {
				case ok:
					done.Add(1)
					if didResume {
						resumed.Add(1)
					}
				case running():
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %q, then %d bytes: %v", head[9:], n, err))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "tlsload: %d failed connections, the first: %v\n", f, firstErr.Load())
	}
	fmt.Fprintf(os.Stderr, "tlsload: %d handshakes, %d resumed\n", done.Load(), resumed.Load())
	fmt.Printf("%.0f\n", float64(done.Load())/elapsed)
}
