// Command idleload opens many kept-alive HTTP connections to a proxy, each
// from one of several loopback source addresses, sends one request on each,
// reads its response and then leaves the connection idle, open, until it is
// told to stop (SIGINT or SIGTERM). It prints
// "ready N" once N connections have had their answer, and a count of the
// ones the proxy has closed when it stops. bench/peers/idle.sh uses it to
// measure what an idle kept-alive connection costs each proxy.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18000", "proxy address")
	conns := flag.Int("conns", 10000, "connections to open and leave idle")
	sources := flag.Int("sources", 20, "loopback source addresses, 127.20.0.1 upwards")
	parallel := flag.Int("parallel", 64, "connections being opened at a time")
	flag.Parse()
	if *sources < 1 || *sources > 250 {
		fmt.Fprintln(os.Stderr, "idleload: -sources must be 1..250")
		os.Exit(2)
	}

	req := []byte("GET / HTTP/1.1\r\nHost: lbctl\r\n\r\n")
	open := make([]net.Conn, *conns)
	var failed atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range *parallel {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *conns {
					return
				}
				src := net.IPv4(127, 20, 0, byte(i%*sources+1))
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
				c, err := d.Dial("tcp", *addr)
				if err != nil {
					fail(err)
					continue
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := c.Write(req); err != nil {
					c.Close()
					fail(err)
					continue
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err == nil && resp.Close {
					err = fmt.Errorf("the proxy closed the connection after its response")
				}
				if err != nil {
					c.Close()
					fail(err)
					continue
				}
				c.SetDeadline(time.Time{})
				open[i] = c
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "idleload: %d connections failed, the first: %v\n", n, firstErr.Load())
	}
	fmt.Printf("ready %d\n", int64(*conns)-failed.Load())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	// A connection the proxy closed reads its end at once.
	closed := 0
	for _, c := range open {
		if c == nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err == io.EOF {
			closed++
		}
		c.Close()
	}
	fmt.Printf("closed by the proxy %d\n", closed)
}
