package cluster

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lbctl/lbctl/affinity"
)

// BenchmarkApplyPins measures how many received pins one member applies
// per second: a message of pins as flush packs them, decoded and merged
// into a table of a million keys. The figure is per pin.
func BenchmarkApplyPins(b *testing.B) {
	table := affinity.New(affinity.Options{Capacity: 1 << 20})
	defer table.Close()
	n := &Node{opts: Options{Table: table}, admin: map[string]adminState{}}
	const keys = 1 << 20
	msgs := make([][]byte, 0, keys/12)
	now := time.Now().UnixNano()
	msg := []byte{wireVersion}
	for i := range keys {
		p := affinity.Stamped{Key: affinity.KeyOf(addrOf(i), 32, 128), ID: fmt.Sprintf("app-%02d", i%16), Stamp: now, Used: now}
		if len(msg)+pinSize(p) > maxMessage {
			msgs = append(msgs, msg)
			msg = []byte{wireVersion}
		}
		msg = appendPin(msg, p)
	}
	b.ReportAllocs()
	b.ResetTimer()
	pins := 0
	for i := 0; b.Loop(); i++ {
		before := n.pinsReceived.Load()
		n.receive(msgs[i%len(msgs)])
		pins += int(n.pinsReceived.Load() - before)
	}
	b.ReportMetric(float64(pins)/b.Elapsed().Seconds(), "pins/s")
}

// BenchmarkPinVisible measures the delay from a pin made on one member to
// the pin being in the other member's table, over loopback, with a 50ms
// gossip interval: broadcasts go out with the next gossip or probe.
func BenchmarkPinVisible(b *testing.B) {
	tA, tB := affinity.New(affinity.Options{}), affinity.New(affinity.Options{})
	defer tA.Close()
	defer tB.Close()
	a, err := Start(Options{Bind: "127.0.0.2:0", Name: "a", Table: tA, Gossip: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	nb, err := Start(Options{Bind: "127.0.0.3:0", Name: "b", Join: []string{a.Address()}, Table: tB, Gossip: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer nb.Close()
	for i := 0; b.Loop(); i++ {
		k := affinity.KeyOf(addrOf(i), 32, 128)
		pin(tA, k, "app-01")
		for {
			if _, _, ok := tB.Get(k); ok {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}

func addrOf(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// BenchmarkReplicate measures how many pins per second reach another
// member: a burst of pins made on one, timed until the other holds them
// all, with the default gossip interval.
func BenchmarkReplicate(b *testing.B) {
	tA, tB := affinity.New(affinity.Options{Capacity: 1 << 20}), affinity.New(affinity.Options{Capacity: 1 << 20})
	defer tA.Close()
	defer tB.Close()
	a, err := Start(Options{Bind: "127.0.0.2:0", Name: "a", Table: tA, PushPull: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	nb, err := Start(Options{Bind: "127.0.0.3:0", Name: "b", Join: []string{a.Address()}, Table: tB, PushPull: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer nb.Close()
	const burst = 2000
	next := 0
	for b.Loop() {
		for range burst {
			pin(tA, affinity.KeyOf(addrOf(next), 32, 128), "app-01")
			next++
		}
		for tB.Stats().Size < next && a.Stats().PinsDropped == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "pins/s")
	b.ReportMetric(float64(a.Stats().PinsDropped), "dropped")
}
