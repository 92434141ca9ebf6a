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
	"strings"
	"sync/atomic"
	"time"
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
}

// TLSOptions are the settings of a TLS front door.
type TLSOptions struct {
	// Certificates are chosen by the client's SNI: the one whose leaf
	// names the server name exactly, then one whose wildcard covers it,
	// then the first, which also answers clients that send no name. It
	// must not be empty.
	Certificates []tls.Certificate
	// MinVersion is the oldest version accepted, tls.VersionTLS12 or
	// tls.VersionTLS13. Zero means TLS 1.2.
	MinVersion uint16
	// ALPN lists the protocols offered, most preferred first: "h2"
	// (HTTP/2) and "http/1.1". Empty means "http/1.1" alone.
	ALPN []string
}

// tlsState is one TLSOptions, ready for handshakes. It is immutable once
// published.
type tlsState struct {
	cfg   *tls.Config
	exact map[string]*tls.Certificate // by lower-case DNS name
	wild  map[string]*tls.Certificate // by the name a "*." wildcard covers, "example.com" for "*.example.com"
	first *tls.Certificate
}

// NewTLS returns a TLS front door with o, or an error saying what in o is
// wrong.
func NewTLS(o TLSOptions) (*TLS, error) {
	t := &TLS{}
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
	st, err := newTLSState(o)
	if err != nil {
		return err
	}
	t.cur.Store(st)
	return nil
}

func newTLSState(o TLSOptions) (*tlsState, error) {
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
	st := &tlsState{exact: map[string]*tls.Certificate{}, wild: map[string]*tls.Certificate{}}
	for i := range o.Certificates {
		c := &o.Certificates[i]
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
		if st.first == nil {
			st.first = c
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
				m[n] = c
			}
		}
	}
	st.cfg = &tls.Config{
		MinVersion:     o.MinVersion,
		NextProtos:     alpn,
		GetCertificate: st.certificate,
	}
	return st, nil
}

// certificate chooses the certificate for a ClientHello: an exact match of
// its server name, then a wildcard one level up, then the first.
func (st *tlsState) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name != "" {
		if c := st.exact[name]; c != nil {
			return c, nil
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := st.wild[parent]; c != nil {
				return c, nil
			}
		}
	}
	return st.first, nil
}

// Certificate returns the certificate a handshake for serverName gets
// ("" for a client that sends none).
func (t *TLS) Certificate(serverName string) *tls.Certificate {
	c, _ := t.cur.Load().certificate(&tls.ClientHelloInfo{ServerName: serverName})
	return c
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
