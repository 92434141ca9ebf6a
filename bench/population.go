package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// Skew says how users are spread over gateways.
type Skew string

const (
	// Zipf gives gateway g (from 0) a share proportional to 1/(g+1)^s: a few
	// gateways, like a carrier's CGNAT or an office, hold most users.
	Zipf Skew = "zipf"
	// Uniform gives every gateway the same number of users, give or take one.
	Uniform Skew = "uniform"
)

// ParseSkew returns the Skew named s: "zipf" or "uniform".
func ParseSkew(s string) (Skew, error) {
	switch Skew(s) {
	case Zipf, Uniform:
		return Skew(s), nil
	}
	return "", fmt.Errorf("%q is not a skew (want zipf or uniform)", s)
}

// MaxGateways is the number of distinct gateway addresses the lab can bind:
// 127.1.0.1 to 127.1.255.250.
const MaxGateways = 256 * 250

// Gateway is one NAT: a loopback source address that all of its users'
// connections come from.
type Gateway struct {
	// Index numbers the gateway from 0, most populous first under Zipf.
	Index int
	// Addr is the source address every dial of its users binds to.
	Addr netip.Addr
	// Users is the number of users behind it.
	Users int
}

// User is one browser behind a gateway.
type User struct {
	// ID numbers the user from 0; requests carry it in X-Lab-User.
	ID int
	// Gateway is the index of the user's gateway.
	Gateway int
	// Phase, in [0, 1), places the user's requests in the run: request k
	// is due at (k+Phase)/requests of the run's duration.
	Phase float64
}

// Population is the users of a scenario and the gateways they sit behind.
// It depends only on its parameters: the same seed gives the same users,
// phases and gateways.
type Population struct {
	Users    []User
	Gateways []Gateway
}

// NewPopulation spreads users over gateways. Gateway g gets its share of
// users by skew (with zipf, s is the exponent) rounded by largest
// remainder, so the counts sum to users; which users sit behind which
// gateway, and each user's phase, are drawn from seed.
func NewPopulation(users, gateways int, skew Skew, s float64, seed uint64) (*Population, error) {
	switch {
	case users < 1:
		return nil, fmt.Errorf("users: %d must be at least 1", users)
	case gateways < 1 || gateways > MaxGateways:
		return nil, fmt.Errorf("gateways: %d is out of range 1..%d", gateways, MaxGateways)
	case skew == Zipf && !(s > 0 && s <= 10):
		return nil, fmt.Errorf("zipf-s: %v is out of range (0, 10]", s)
	case skew != Zipf && skew != Uniform:
		return nil, fmt.Errorf("skew: %q is not zipf or uniform", skew)
	}
	weights := make([]float64, gateways)
	for g := range weights {
		weights[g] = 1
		if skew == Zipf {
			weights[g] = math.Pow(float64(g+1), -s)
		}
	}
	counts := apportion(users, weights)

	p := &Population{
		Users:    make([]User, users),
		Gateways: make([]Gateway, gateways),
	}
	for g := range p.Gateways {
		p.Gateways[g] = Gateway{Index: g, Addr: gatewayAddr(g), Users: counts[g]}
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c6263746c)) // "lbctl"
	order := rng.Perm(users)
	next := 0
	for g, n := range counts {
		for range n {
			id := order[next]
			p.Users[id] = User{ID: id, Gateway: g}
			next++
		}
	}
	for i := range p.Users {
		p.Users[i].Phase = rng.Float64()
	}
	return p, nil
}

// apportion splits total into len(weights) whole parts proportional to the
// weights, by largest remainder (ties to the lower index); the parts sum to
// total.
func apportion(total int, weights []float64) []int {
	sum := 0.0
	for _, w := range weights {
		sum += w
	}
	counts := make([]int, len(weights))
	rem := make([]float64, len(weights))
	given := 0
	for i, w := range weights {
		exact := float64(total) * w / sum
		counts[i] = int(exact)
		rem[i] = exact - float64(counts[i])
		given += counts[i]
	}
	idx := make([]int, len(weights))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case rem[a] > rem[b]:
			return -1
		case rem[a] < rem[b]:
			return 1
		}
		return 0
	})
	for i := 0; given < total; i++ {
		counts[idx[i%len(idx)]]++
		given++
	}
	return counts
}

// gatewayAddr is gateway g's source address: 127.1.(g/250).(g%250+1). It
// stays clear of 127.0.0.x, where the lab's proxies and backends listen.
func gatewayAddr(g int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 1, byte(g / 250), byte(g%250 + 1)})
}

// MaxPoolSize is the most addresses one gateway's pool can hold: a pool
// fills part of a /24 of its own.
const MaxPoolSize = 250

// poolAddr is address slot j of gateway g when gateways have pools of
// size > 1 (--pool-size): gateway g owns the /24 127.(2+g/256).(g%256).0 and
// slot j is its host j+1, as a carrier's NAT pool is one contiguous block.
// So ipv4_prefix = 24 keys a whole pool as one client. With a pool of one,
// slot 0 is gatewayAddr(g).
func poolAddr(g, j, size int) netip.Addr {
	if size <= 1 {
		return gatewayAddr(g)
	}
	return netip.AddrFrom4([4]byte{127, byte(2 + g/256), byte(g % 256), byte(j + 1)})
}

// Share returns the fraction of all users behind gateway g.
func (p *Population) Share(g int) float64 {
	return float64(p.Gateways[g].Users) / float64(len(p.Users))
}

// TopShare returns the fraction of all users behind the n most populous
// gateways.
func (p *Population) TopShare(n int) float64 {
	counts := make([]int, len(p.Gateways))
	for i, g := range p.Gateways {
		counts[i] = g.Users
	}
	slices.SortFunc(counts, func(a, b int) int { return b - a })
	sum := 0
	for _, c := range counts[:min(n, len(counts))] {
		sum += c
	}
	return float64(sum) / float64(len(p.Users))
}

// Top returns the n most populous gateways with at least one user, most
// populous first (ties in index order).
func (p *Population) Top(n int) []Gateway {
	gws := slices.Clone(p.Gateways)
	slices.SortStableFunc(gws, func(a, b Gateway) int { return b.Users - a.Users })
	var top []Gateway
	for _, g := range gws[:min(n, len(gws))] {
		if g.Users > 0 {
			top = append(top, g)
		}
	}
	return top
}

// ActiveGateways returns the number of gateways with at least one user.
func (p *Population) ActiveGateways() int {
	n := 0
	for _, g := range p.Gateways {
		if g.Users > 0 {
			n++
		}
	}
	return n
}
