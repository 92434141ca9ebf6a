package l7

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"
)

// TLS terminates TLS on the proxy's listener with crypto/tls. Its
// certificates, minimum version and ALPN protocols change with Update
// while the proxy serves: handshakes that start afterwards use them, and
// connections already open keep the session they negotiated.
//
// Session resumption uses tickets; their key is crypto/tls's own,
// generated at start and rotated by it (a new key every day, each
// accepted for a week), and Update keeps it, so that an update does not
// make every browser do a full handshake again.
type TLS struct {
	base *tls.Config              // holds the ticket keys; hands each handshake the current config
	cur  atomic.Pointer[tlsState] // what Update set last
	now  func() time.Time         // the clock OCSP staples are checked against; nil is time.Now
}

// TLSOptions are the settings of a TLS front door.
type TLSOptions struct {
	// Certificates are chosen by the client's SNI: the one whose leaf
	// names the server name exactly, then one whose wildcard covers it,
	// then the first, which also answers clients that send no name. It
	// must not be empty.
	//
	// A certificate's OCSPStaple, when set, must pass CheckOCSP. It is
	// stapled to handshakes until its NextUpdate; after that they get the
	// certificate without it, since a client that sees a stale response
	// may refuse the connection, and one that sees none asks its CA.
	Certificates []tls.Certificate
	// MinVersion is the oldest version accepted, tls.VersionTLS12 or
	// tls.VersionTLS13. Zero means TLS 1.2.
	MinVersion uint16
	// ALPN lists the protocols offered, most preferred first: "h2"
	// (HTTP/2) and "http/1.1". Empty means "http/1.1" alone.
	ALPN []string
	// Curves are the key exchanges allowed, as a set: crypto/tls ranks
	// them itself, a post-quantum hybrid the client supports first, then
	// one the client sent a key share for (which spares a round trip),
	// then in its fixed order. Empty means crypto/tls's default set, which
	// in Go 1.26 is X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024,
	// X25519, P-256, P-384 and P-521.
	Curves []tls.CurveID
}

// tlsState is one TLSOptions, ready for handshakes. It is immutable once
// published.
type tlsState struct {
	cfg   *tls.Config
	exact map[string]*servedCert // by lower-case DNS name
	wild  map[string]*servedCert // by the name a "*." wildcard covers, "example.com" for "*.example.com"
	first *servedCert
	now   func() time.Time
}

// servedCert is one certificate as handshakes get it: with its OCSP
// staple until the staple goes stale, then without.
type servedCert struct {
	cert    *tls.Certificate
	bare    *tls.Certificate // cert without its staple; nil when it has none
	staleAt time.Time        // the staple's NextUpdate; zero when it never goes stale
}

// get returns the certificate to serve at the time now returns.
func (s *servedCert) get(now func() time.Time) *tls.Certificate {
	if s.bare != nil && !s.staleAt.IsZero() && !now().Before(s.staleAt) {
		return s.bare
	}
	return s.cert
}

// NewTLS returns a TLS front door with o, or an error saying what in o is
// wrong.
func NewTLS(o TLSOptions) (*TLS, error) {
	return newTLS(o, nil)
}

// newTLS is NewTLS with now as the clock that OCSP staples are checked
// against (nil: time.Now).
func newTLS(o TLSOptions, now func() time.Time) (*TLS, error) {
	t := &TLS{now: now}
	t.base = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.cur.Load().cfg, nil
		},
	}
	if err := t.Update(o); err != nil {
		return nil, err
	}
	return t, nil
}

// Update replaces the options for handshakes that start afterwards. On an
// error it changes nothing.
func (t *TLS) Update(o TLSOptions) error {
	now := t.now
	if now == nil {
		now = time.Now
	}
	st, err := newTLSState(o, now)
	if err != nil {
		return err
	}
	t.cur.Store(st)
	return nil
}

func newTLSState(o TLSOptions, now func() time.Time) (*tlsState, error) {
	if len(o.Certificates) == 0 {
		return nil, errors.New("tls: no certificate")
	}
	switch o.MinVersion {
	case 0:
		o.MinVersion = tls.VersionTLS12
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("tls: minimum version %#x is neither TLS 1.2 nor 1.3", o.MinVersion)
	}
	alpn := o.ALPN
	if len(alpn) == 0 {
		alpn = []string{"http/1.1"}
	}
	for _, p := range alpn {
		if p != "http/1.1" && p != "h2" {
			return nil, fmt.Errorf("tls: ALPN protocol %q is not served", p)
		}
	}
	st := &tlsState{exact: map[string]*servedCert{}, wild: map[string]*servedCert{}, now: now}
	for i := range o.Certificates {
		c := &o.Certificates[i]
		sc := &servedCert{cert: c}
		leaf := c.Leaf
		if leaf == nil {
			if len(c.Certificate) == 0 {
				return nil, fmt.Errorf("tls: certificate %d is empty", i)
			}
			var err error
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("tls: certificate %d: %w", i, err)
			}
			c.Leaf = leaf
		}
		if c.OCSPStaple != nil {
			next, err := CheckOCSP(c, c.OCSPStaple, now())
			if err != nil {
				return nil, fmt.Errorf("tls: certificate %d: %w", i, err)
			}
			bare := *c
			bare.OCSPStaple = nil
			sc.bare, sc.staleAt = &bare, next
		}
		if st.first == nil {
			st.first = sc
		}
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(n)
			m := st.exact
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				m, n = st.wild, rest
			}
			if _, taken := m[n]; !taken { // the first certificate naming it wins
				m[n] = sc
			}
		}
	}
	st.cfg = &tls.Config{
		MinVersion:       o.MinVersion,
		NextProtos:       alpn,
		CurvePreferences: o.Curves,
		GetCertificate:   st.certificate,
	}
	return st, nil
}

// certificate chooses the certificate for a ClientHello: an exact match of
// its server name, then a wildcard one level up, then the first.
func (st *tlsState) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return st.choose(hello.ServerName).get(st.now), nil
}

// choose returns the certificate for serverName: an exact match, then a
// wildcard one level up, then the first.
func (st *tlsState) choose(serverName string) *servedCert {
	name := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if name != "" {
		if c := st.exact[name]; c != nil {
			return c
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := st.wild[parent]; c != nil {
				return c
			}
		}
	}
	return st.first
}

// Certificate returns the certificate a handshake for serverName gets
// ("" for a client that sends none).
func (t *TLS) Certificate(serverName string) *tls.Certificate {
	st := t.cur.Load()
	return st.choose(serverName).get(st.now)
}

// CheckOCSP checks that der is an OCSP response that c can staple: a
// successful response about c's leaf (by serial number), signed by the
// leaf's issuer, the next certificate of c's chain, or by a responder
// certificate that issuer signed for OCSP signing, saying "good", issued
// by now and not past its NextUpdate. It returns that NextUpdate, zero
// when the response gives none.
func CheckOCSP(c *tls.Certificate, der []byte, now time.Time) (time.Time, error) {
	leaf := c.Leaf
	if leaf == nil {
		if len(c.Certificate) == 0 {
			return time.Time{}, errors.New("OCSP response: the certificate is empty")
		}
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return time.Time{}, fmt.Errorf("OCSP response: %w", err)
		}
	}
	if len(c.Certificate) < 2 {
		return time.Time{}, errors.New("OCSP response: the certificate file holds no issuer certificate after the leaf to check the response against")
	}
	issuer, err := x509.ParseCertificate(c.Certificate[1])
	if err != nil {
		return time.Time{}, fmt.Errorf("OCSP response: the issuer certificate: %w", err)
	}
	r, err := ocsp.ParseResponseForCert(der, leaf, issuer)
	if err != nil {
		return time.Time{}, fmt.Errorf("OCSP response: %w", err)
	}
	if r.Certificate != nil && !slices.Contains(r.Certificate.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
		return time.Time{}, fmt.Errorf("OCSP response: its responder %q is not authorized for OCSP signing", r.Certificate.Subject)
	}
	switch {
	case r.Status == ocsp.Revoked:
		return time.Time{}, fmt.Errorf("OCSP response: the certificate was revoked at %s", r.RevokedAt.UTC().Format(time.RFC3339))
	case r.Status != ocsp.Good:
		return time.Time{}, errors.New("OCSP response: the certificate's status is unknown to its CA")
	case r.ThisUpdate.After(now):
		return time.Time{}, fmt.Errorf("OCSP response: issued for %s, still in the future", r.ThisUpdate.UTC().Format(time.RFC3339))
	case !r.NextUpdate.IsZero() && !now.Before(r.NextUpdate):
		return time.Time{}, fmt.Errorf("OCSP response: expired at %s", r.NextUpdate.UTC().Format(time.RFC3339))
	}
	return r.NextUpdate, nil
}

// handshake runs the server side of a TLS handshake over raw, the
// connection accepted as c (raw is c itself, or a connection that has
// already read what comes before the ClientHello, such as a PROXY
// protocol header). The whole handshake must be done within timeout (the
// header timeout): a client that stalls or sends garbage is cut, and
// nothing of it reaches a backend. It returns nil when the handshake
// failed.
func (t *TLS) handshake(c *net.TCPConn, raw net.Conn, timeout time.Duration) *tls.Conn {
	c.SetDeadline(time.Now().Add(timeout))
	sec := tls.Server(raw, t.base)
	if err := sec.HandshakeContext(context.Background()); err != nil {
		return nil
	}
	// The session sets its own deadlines from here on.
	c.SetDeadline(time.Time{})
	return sec
}

// relayTLS relays bytes both ways between the client, over TLS, and the
// backend after a protocol switch, with splice.Relay's rules: a clean end
// of one direction half-closes the other side (a close_notify and a FIN
// towards the client), an error closes both, and idle (when positive) with
// no byte either way ends the relay. Bytes go through user space: TLS
// records cannot be spliced.
func relayTLS(sec *tls.Conn, client, up *net.TCPConn, idle time.Duration) {
	var last atomic.Int64 // unix nanoseconds of the latest byte either way
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if relayCopy(up, sec, client, idle, &last) == nil {
			up.CloseWrite()
			return
		}
		client.Close()
		up.Close()
	}()
	if relayCopy(sec, up, up, idle, &last) == nil {
		sec.CloseWrite()
		client.CloseWrite()
	} else {
		client.Close()
		up.Close()
	}
	<-done
}

// relayCopy copies src to dst until src ends (nil) or fails. srcConn is
// the socket under src, whose read deadline enforces idle: when it fires
// and the other direction has moved a byte within idle, copying goes on.
func relayCopy(dst io.Writer, src io.Reader, srcConn *net.TCPConn, idle time.Duration, last *atomic.Int64) error {
	buf := make([]byte, 16<<10)
	for {
		if idle > 0 {
			srcConn.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle:
			continue
		case err != nil:
			return err
		}
	}
}
