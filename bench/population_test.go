package bench

import (
	"net/netip"
	"slices"
	"testing"
)

func TestPopulationAccountsForEveryUser(t *testing.T) {
	for _, tc := range []struct {
		name            string
		users, gateways int
		skew            Skew
		s               float64
	}{
		{"zipf", 2000, 100, Zipf, 1.1},
		{"zipf steep", 500, 40, Zipf, 3},
		{"zipf more gateways than users", 10, 300, Zipf, 1},
		{"uniform", 2000, 100, Uniform, 0},
		{"uniform uneven", 1001, 7, Uniform, 0},
		{"one gateway", 50, 1, Zipf, 1.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPopulation(tc.users, tc.gateways, tc.skew, tc.s, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Users) != tc.users || len(p.Gateways) != tc.gateways {
				t.Fatalf("got %d users, %d gateways; want %d, %d", len(p.Users), len(p.Gateways), tc.users, tc.gateways)
			}
			behind := make([]int, tc.gateways)
			for i, u := range p.Users {
				if u.ID != i {
					t.Fatalf("user %d has id %d", i, u.ID)
				}
				if u.Gateway < 0 || u.Gateway >= tc.gateways {
					t.Fatalf("user %d is behind gateway %d of %d", i, u.Gateway, tc.gateways)
				}
				if u.Phase < 0 || u.Phase >= 1 {
					t.Fatalf("user %d has phase %v, want [0, 1)", i, u.Phase)
				}
				behind[u.Gateway]++
			}
			sum := 0
			for g, gw := range p.Gateways {
				if gw.Users != behind[g] {
					t.Errorf("gateway %d says %d users, %d sit behind it", g, gw.Users, behind[g])
				}
				sum += gw.Users
			}
			if sum != tc.users {
				t.Errorf("gateway counts sum to %d, want %d", sum, tc.users)
			}
		})
	}
}

func TestZipfPutsMoreUsersOnTheFirstGateways(t *testing.T) {
	zipf, err := NewPopulation(2000, 100, Zipf, 1.1, 7)
	if err != nil {
		t.Fatal(err)
	}
	uniform, err := NewPopulation(2000, 100, Uniform, 0, 7)
	if err != nil {
		t.Fatal(err)
	}
	first := func(p *Population, n int) int {
		s := 0
		for _, g := range p.Gateways[:n] {
			s += g.Users
		}
		return s
	}
	if z, u := first(zipf, 1), first(uniform, 1); z < 5*u {
		t.Errorf("first gateway: zipf %d users, uniform %d; want zipf at least 5x", z, u)
	}
	if z, u := first(zipf, 10), first(uniform, 10); z <= 2*u {
		t.Errorf("first 10 gateways: zipf %d users, uniform %d; want zipf more than 2x", z, u)
	}
	for g := 1; g < len(zipf.Gateways); g++ {
		if zipf.Gateways[g].Users > zipf.Gateways[g-1].Users {
			t.Errorf("zipf gateway %d holds %d users, more than gateway %d (%d)",
				g, zipf.Gateways[g].Users, g-1, zipf.Gateways[g-1].Users)
		}
	}
	if got := zipf.TopShare(1); got != zipf.Share(0) {
		t.Errorf("TopShare(1) = %v, Share(0) = %v", got, zipf.Share(0))
	}
	// Uniform: every gateway within one user of the others.
	counts := make([]int, len(uniform.Gateways))
	for i, g := range uniform.Gateways {
		counts[i] = g.Users
	}
	if lo, hi := slices.Min(counts), slices.Max(counts); hi-lo > 1 {
		t.Errorf("uniform counts range %d..%d, want within one", lo, hi)
	}
}

// TestZipfCountsByHand checks the apportionment against numbers worked out
// by hand: s=1 over 3 gateways gives weights 1, 1/2, 1/3 (sum 11/6), so
// 10000 users split 5454.5, 2727.3, 1818.2; floors 5454+2727+1818 = 9999 and
// the largest remainder (0.5) gets the last user.
func TestZipfCountsByHand(t *testing.T) {
	p, err := NewPopulation(10000, 3, Zipf, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, g := range p.Gateways {
		got = append(got, g.Users)
	}
	if want := []int{5455, 2727, 1818}; !slices.Equal(got, want) {
		t.Errorf("counts = %v, want %v", got, want)
	}
}

func TestSameSeedSamePopulation(t *testing.T) {
	a, _ := NewPopulation(1000, 50, Zipf, 1.1, 42)
	b, _ := NewPopulation(1000, 50, Zipf, 1.1, 42)
	c, _ := NewPopulation(1000, 50, Zipf, 1.1, 43)
	if !slices.Equal(a.Users, b.Users) || !slices.Equal(a.Gateways, b.Gateways) {
		t.Error("the same seed gave two populations")
	}
	if slices.Equal(a.Users, c.Users) {
		t.Error("seeds 42 and 43 gave the same users")
	}
}

func TestGatewayAddresses(t *testing.T) {
	for g, want := range map[int]string{0: "127.1.0.1", 1: "127.1.0.2", 249: "127.1.0.250", 250: "127.1.1.1", MaxGateways - 1: "127.1.255.250"} {
		if got := gatewayAddr(g).String(); got != want {
			t.Errorf("gatewayAddr(%d) = %s, want %s", g, got, want)
		}
	}
	p, _ := NewPopulation(10, 600, Uniform, 0, 1)
	seen := make(map[netip.Addr]bool)
	lo := netip.MustParseAddr("127.0.0.1")
	for _, g := range p.Gateways {
		if seen[g.Addr] || g.Addr == lo || !netip.MustParsePrefix("127.0.0.0/8").Contains(g.Addr) {
			t.Errorf("gateway %d: %s is taken, the proxies' address, or off loopback", g.Index, g.Addr)
		}
		seen[g.Addr] = true
	}
}

func TestNewPopulationRejects(t *testing.T) {
	for _, tc := range []struct {
		users, gateways int
		skew            Skew
		s               float64
	}{
		{0, 10, Zipf, 1.1},
		{10, 0, Zipf, 1.1},
		{10, MaxGateways + 1, Uniform, 0},
		{10, 10, Zipf, 0},
		{10, 10, Zipf, -1},
		{10, 10, "pareto", 1},
	} {
		if _, err := NewPopulation(tc.users, tc.gateways, tc.skew, tc.s, 1); err == nil {
			t.Errorf("NewPopulation(%d, %d, %q, %v) succeeded", tc.users, tc.gateways, tc.skew, tc.s)
		}
	}
}
