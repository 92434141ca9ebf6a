// Command srcload drives a TCP proxy with one short HTTP request per
// connection, each from one of many distinct loopback source addresses, so
// that a source-address affinity table sees that many clients. It prints the
// completed requests per second. bench/peers/run.sh uses it for the
// "l4-sources" workload.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18000", "proxy address")
	sources := flag.Int("sources", 10000, "distinct source addresses, 127.10.0.1 upwards")
	conns := flag.Int("conns", 64, "connections in flight")
	duration := flag.Duration("duration", 5*time.Second, "how long to run")
	flag.Parse()
	if *sources < 1 || *sources > 250*250 {
		fmt.Fprintln(os.Stderr, "srcload: -sources must be 1..62500")
		os.Exit(2)
	}

	req := []byte("GET / HTTP/1.1\r\nHost: lbctl\r\nConnection: close\r\n\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	// running reports whether the run is still on. The context's own
	// error turns only when its timer fires, which on a busy core lags
	// its deadline; dials in that gap fail at once and are not failures.
	end, _ := ctx.Deadline()
	running := func() bool { return time.Now().Before(end) }
	var done, failed atomic.Int64
	var firstErr atomic.Value
	var next atomic.Int64
	var wg sync.WaitGroup
	base := rand.IntN(40000)
	start := time.Now()
	for range *conns {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for running() {
				k := int(next.Add(1))
				i := k % *sources
				src := net.IPv4(127, 10, byte(i/250), byte(i%250+1))
				// Each use of a source takes the next port, from a random
				// start. Left to the kernel, a source gets the same few
				// ports again, run after run, and a SYN that meets the
				// proxy's TIME_WAIT socket of the same four-tuple goes
				// unanswered for a second.
				port := 20000 + (base+k/(*sources))%40000
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src, Port: port}, Timeout: 3 * time.Second}
				c, err := d.DialContext(ctx, "tcp", *addr)
				if err != nil {
					if running() {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					continue
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Write(req)
				n := 0
				for err == nil {
					var m int
					m, err = c.Read(buf)
					n += m
				}
				c.Close()
				if err == io.EOF && n > 0 {
					done.Add(1)
				} else if running() {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("after %d bytes: %v", n, err))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "srcload: %d failed connections, the first: %v\n", f, firstErr.Load())
	}
	fmt.Printf("%.0f\n", float64(done.Load())/elapsed)
}
