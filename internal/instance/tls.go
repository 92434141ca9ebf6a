package instance

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/l7"
)

// tlsFront is the TLS side of an L7 front door: the certificates and
// options in force, and the plain listener that redirects to https.
type tlsFront struct {
	front *l7.TLS // nil without [tls] certificates

	// pems are the certificate and key files as last loaded, to tell a
	// reload that changed them from one that did not.
	pems [][]byte

	redirectLn net.Listener // tls.redirect_http, open from New until Serve serves it
	redirect   *http.Server // serving redirectLn; nil before Serve or without tls.redirect_http
	redirected sync.WaitGroup
}

// setupTLS loads the [tls] certificates of cfg, puts the L7 proxy behind
// TLS, and opens tls.redirect_http (served from Serve on), so that a bad
// certificate or a taken address fails the start. It does nothing without
// certificates.
func (in *Instance) setupTLS(cfg *config.Config) error {
	if in.l7 == nil || !cfg.TLS.On() {
		return nil
	}
	opts, pems, err := loadTLS(&cfg.TLS)
	if err != nil {
		return err
	}
	front, err := l7.NewTLS(opts)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if cfg.TLS.RedirectHTTP != "" {
		if in.tls.redirectLn, err = Listen(context.Background(), cfg.TLS.RedirectHTTP); err != nil {
			return fmt.Errorf("tls.redirect_http: %w", err)
		}
	}
	in.tls.front, in.tls.pems = front, pems
	in.l7.TLS = front
	return nil
}

// loadTLS reads the certificate, key and OCSP response files of t. An
// error names the element of tls.certificates and the file that failed,
// and says why.
func loadTLS(t *config.TLS) (l7.TLSOptions, [][]byte, error) {
	opts := l7.TLSOptions{MinVersion: tls.VersionTLS12, ALPN: slices.Clone(t.ALPN), Curves: t.CurveIDs()}
	if t.MinVersion == "1.3" {
		opts.MinVersion = tls.VersionTLS13
	}
	var pems [][]byte
	for i, c := range t.Certificates {
		certPEM, err := os.ReadFile(c.Cert)
		if err != nil {
			return opts, nil, fmt.Errorf("tls.certificates[%d].cert: %w", i, err)
		}
		keyPEM, err := os.ReadFile(c.Key)
		if err != nil {
			return opts, nil, fmt.Errorf("tls.certificates[%d].key: %w", i, err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return opts, nil, fmt.Errorf("tls.certificates[%d]: %s with key %s: %w", i, c.Cert, c.Key, err)
		}
		pems = append(pems, certPEM, keyPEM)
		if c.OCSP != "" {
			der, err := os.ReadFile(c.OCSP)
			if err != nil {
				return opts, nil, fmt.Errorf("tls.certificates[%d].ocsp: %w", i, err)
			}
			if _, err := l7.CheckOCSP(&pair, der, time.Now()); err != nil {
				return opts, nil, fmt.Errorf("tls.certificates[%d].ocsp: %s for %s: %w", i, c.OCSP, c.Cert, err)
			}
			pair.OCSPStaple = der
			pems = append(pems, der)
		}
		opts.Certificates = append(opts.Certificates, pair)
	}
	return opts, pems, nil
}

// tlsPlan is what a reload does to TLS, worked out before anything
// changes.
type tlsPlan struct {
	opts  l7.TLSOptions
	pems  [][]byte
	items []string
}

// planTLS reads the certificate files of next again, as a reload does
// whether or not the config names other files: renewed certificates are
// taken up by a reload. A file that cannot be read or parsed refuses the
// reload and keeps the certificates in force.
func (in *Instance) planTLS(next *config.Config) (*tlsPlan, error) {
	if in.tls.front == nil {
		return nil, nil
	}
	opts, pems, err := loadTLS(&next.TLS)
	if err != nil {
		return nil, fmt.Errorf("%w (the certificates in force are kept)", err)
	}
	// The options are checked by building them, so that applying them
	// cannot fail once the reload has changed other things.
	if _, err := l7.NewTLS(opts); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	p := &tlsPlan{opts: opts, pems: pems}
	var changed []string
	if !slices.EqualFunc(pems, in.tls.pems, bytes.Equal) {
		changed = append(changed, "certificates")
	}
	if next.TLS.MinVersion != in.cfg.TLS.MinVersion {
		changed = append(changed, "min_version")
	}
	if !slices.Equal(next.TLS.ALPN, in.cfg.TLS.ALPN) {
		changed = append(changed, "alpn")
	}
	if !slices.Equal(next.TLS.Curves, in.cfg.TLS.Curves) {
		changed = append(changed, "curves")
	}
	if len(changed) > 0 {
		p.items = []string{"~tls(" + strings.Join(changed, ", ") + ")"}
	}
	return p, nil
}

// applyTLS makes p the options of handshakes that start afterwards, and
// returns its change items. planTLS has checked the options.
func (in *Instance) applyTLS(p *tlsPlan) []string {
	if p == nil {
		return nil
	}
	if err := in.tls.front.Update(p.opts); err != nil {
		in.log.Error("tls options not applied", "error", err)
		return nil
	}
	in.tls.pems = p.pems
	return p.items
}

// tlsRestartOnly returns a message for each [tls] setting that differs
// between cur and next and that applies only at start: TLS on or off, and
// the redirect listener.
func tlsRestartOnly(cur, next *config.Config) []string {
	var msgs []string
	const restart = "changed; it takes effect only at a restart, so the reload is refused (restore it, or restart lbctl)"
	if cur.TLS.On() != next.TLS.On() {
		msgs = append(msgs, "tls.certificates: TLS turned "+map[bool]string{true: "on", false: "off"}[next.TLS.On()]+": "+restart)
	}
	if cur.TLS.RedirectHTTP != next.TLS.RedirectHTTP {
		msgs = append(msgs, "tls.redirect_http: "+restart)
	}
	return msgs
}

// serveRedirect serves tls.redirect_http, when set, answering every
// request there with 308 to the same URL over https at the front
// listener's port. The server's timeouts are the front door's: the head
// within timeouts.header, the connection idle for timeouts.idle.
func (in *Instance) serveRedirect() {
	ln := in.tls.redirectLn
	if ln == nil {
		return
	}
	in.reloading.Lock()
	cfg := in.cfg
	in.reloading.Unlock()
	header := cfg.Timeouts.Header.D()
	idle := cfg.Timeouts.Idle.D()
	if idle <= 0 {
		idle = header
	}
	in.tls.redirect = &http.Server{
		Handler: l7.HTTPSRedirect(func() string {
			if ln := in.frontListener(); ln != nil {
				if _, port, err := net.SplitHostPort(ln.Addr().String()); err == nil {
					return port
				}
			}
			return "443"
		}),
		ReadHeaderTimeout: header,
		ReadTimeout:       header,
		WriteTimeout:      header,
		IdleTimeout:       idle,
		MaxHeaderBytes:    cfg.Limits.HeaderBytes,
	}
	srv := in.tls.redirect
	in.tls.redirected.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			in.log.Error("https redirect listener stopped", "listen", cfg.TLS.RedirectHTTP, "error", err)
		}
	})
	in.log.Info("https redirect listening", "listen", ln.Addr().String())
}

// stopRedirect closes the redirect listener and its connections, letting
// answers in progress finish until ctx ends.
func (in *Instance) stopRedirect(ctx context.Context) {
	if in.tls.redirect == nil {
		return
	}
	if in.tls.redirect.Shutdown(ctx) != nil {
		in.tls.redirect.Close()
	}
	in.tls.redirected.Wait()
}

// closeRedirect closes the redirect listener and its connections at once.
func (in *Instance) closeRedirect() {
	if in.tls.redirect == nil {
		if in.tls.redirectLn != nil {
			in.tls.redirectLn.Close() // never served
		}
		return
	}
	in.tls.redirect.Close()
	in.tls.redirected.Wait()
}
