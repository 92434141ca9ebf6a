package config

import (
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// TLS is the [tls] table: TLS termination on the L7 listener. It is on
// when Certificates is not empty.
type TLS struct {
	// Certificates are the certificate/key pairs served, chosen by the
	// client's SNI: an exact name first, then a wildcard, then the first
	// pair, which is also the answer to a client that sends no name.
	Certificates []Certificate `toml:"certificates"`
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3".
	MinVersion string `toml:"min_version"`
	// ALPN lists the application protocols offered, most preferred first.
	ALPN []string `toml:"alpn"`
	// RedirectHTTP, when set, is a host:port where a plain HTTP listener
	// answers every request with 308 to the same URL over https.
	RedirectHTTP string `toml:"redirect_http"`
	// Curves are the key exchanges allowed, by the names of curveIDs, as
	// a set: crypto/tls ranks them itself.
	Curves []string `toml:"curves"`
}

// curveNames are the key exchanges tls.curves may name, in crypto/tls's
// order of preference, and curveIDs their code points. The first three
// are post-quantum hybrids, TLS 1.3 only.
var (
	curveNames = []string{"X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024", "X25519", "P-256", "P-384", "P-521"}
	curveIDs   = map[string]tls.CurveID{
		"X25519MLKEM768":     tls.X25519MLKEM768,
		"SecP256r1MLKEM768":  tls.SecP256r1MLKEM768,
		"SecP384r1MLKEM1024": tls.SecP384r1MLKEM1024,
		"X25519":             tls.X25519,
		"P-256":              tls.CurveP256,
		"P-384":              tls.CurveP384,
		"P-521":              tls.CurveP521,
	}
)

// CurveIDs returns tls.curves as crypto/tls's code points. Validate has
// checked the names.
func (t *TLS) CurveIDs() []tls.CurveID {
	ids := make([]tls.CurveID, 0, len(t.Curves))
	for _, n := range t.Curves {
		if id, ok := curveIDs[n]; ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// Certificate is one element of tls.certificates: PEM files.
type Certificate struct {
	// Cert is the path of the certificate chain, leaf first.
	Cert string `toml:"cert"`
	// Key is the path of the private key of the leaf.
	Key string `toml:"key"`
	// OCSP, when set, is the path of a DER OCSP response about the leaf,
	// stapled to handshakes: made by the leaf's issuer, which must follow
	// the leaf in Cert.
	OCSP string `toml:"ocsp"`
}

// On reports whether the listener terminates TLS.
func (t *TLS) On() bool { return len(t.Certificates) > 0 }

// defaultTLS is the [tls] table of an empty file: off, and once
// certificates are given, TLS 1.2 and up with HTTP/2 and HTTP/1.1.
func defaultTLS() TLS {
	return TLS{Certificates: []Certificate{}, MinVersion: "1.2", ALPN: []string{"h2", "http/1.1"}, Curves: slices.Clone(curveNames)}
}

// setCertificates decodes tls.certificates: an array of {cert, key, ocsp}
// tables, ocsp optional.
func setCertificates(dst *[]Certificate, v any) error {
	var tables []map[string]any
	switch v := v.(type) {
	case []map[string]any:
		tables = v
	case []any:
		for i, t := range v {
			m, ok := t.(map[string]any)
			if !ok {
				return fmt.Errorf("element %d is %s; each must be a table {cert = ..., key = ...}", i, describe(t))
			}
			tables = append(tables, m)
		}
	default:
		return fmt.Errorf("%s must be an array of tables [{cert = ..., key = ...}]", describe(v))
	}
	out := make([]Certificate, 0, len(tables))
	for i, t := range tables {
		var c Certificate
		for _, k := range slices.Sorted(maps.Keys(t)) {
			var err error
			switch k {
			case "cert":
				err = setString(&c.Cert, t[k])
			case "key":
				err = setString(&c.Key, t[k])
			case "ocsp":
				err = setString(&c.OCSP, t[k])
			default:
				err = fmt.Errorf("unknown key %q (cert, key and ocsp are)", k)
			}
			if err != nil {
				return fmt.Errorf("element %d: %s: %w", i, k, err)
			}
		}
		out = append(out, c)
	}
	*dst = out
	return nil
}

// tls checks the [tls] table of a config in mode.
func (v *validator) tls(t *TLS, mode, listen string) {
	v.oneOf("tls.min_version", t.MinVersion, "1.2", "1.3")
	if len(t.ALPN) == 0 {
		v.fail("tls.alpn", `[] must list at least one protocol ("h2", "http/1.1")`)
	}
	for i, p := range t.ALPN {
		switch {
		case p != "h2" && p != "http/1.1":
			v.fail("tls.alpn", "element %d: %q is not a protocol lbctl serves (\"h2\", \"http/1.1\")", i, p)
		case slices.Index(t.ALPN, p) < i:
			v.fail("tls.alpn", "element %d: %q is listed twice", i, p)
		}
	}
	v.curves(t)
	for i, c := range t.Certificates {
		if strings.TrimSpace(c.Cert) == "" {
			v.fail(fmt.Sprintf("tls.certificates[%d].cert", i), "%q must be the path of a PEM certificate file", c.Cert)
		}
		if strings.TrimSpace(c.Key) == "" {
			v.fail(fmt.Sprintf("tls.certificates[%d].key", i), "%q must be the path of a PEM key file", c.Key)
		}
	}
	if t.On() && mode != "l7" {
		v.fail("tls.certificates", "TLS termination needs mode = \"l7\" (mode is %q)", mode)
	}
	if t.RedirectHTTP != "" {
		switch msg := checkHostPort(t.RedirectHTTP, true); {
		case msg != "":
			v.fail("tls.redirect_http", "%q %s", t.RedirectHTTP, msg)
		case !t.On():
			v.fail("tls.redirect_http", "%q redirects to https, which needs tls.certificates", t.RedirectHTTP)
		case t.RedirectHTTP == listen:
			v.fail("tls.redirect_http", "%q is the TLS listen address itself", t.RedirectHTTP)
		}
	}
}

// curves checks tls.curves: known names, each once, and one that TLS 1.2
// can use (the hybrids are TLS 1.3 only) unless min_version is "1.3".
func (v *validator) curves(t *TLS) {
	if len(t.Curves) == 0 {
		v.fail("tls.curves", "[] must list at least one key exchange (%s)", strings.Join(curveNames, ", "))
		return
	}
	classic := false
	for i, n := range t.Curves {
		id, ok := curveIDs[n]
		switch {
		case !ok:
			v.fail("tls.curves", "element %d: %q is not a key exchange lbctl offers (%s)", i, n, strings.Join(curveNames, ", "))
		case slices.Index(t.Curves, n) < i:
			v.fail("tls.curves", "element %d: %q is listed twice", i, n)
		case id == tls.X25519 || id == tls.CurveP256 || id == tls.CurveP384 || id == tls.CurveP521:
			classic = true
		}
	}
	if !classic && t.MinVersion != "1.3" {
		v.fail("tls.curves", "%q holds only post-quantum hybrids, which TLS 1.2 clients cannot use: add X25519 or P-256, or set tls.min_version = \"1.3\"", t.Curves)
	}
}
