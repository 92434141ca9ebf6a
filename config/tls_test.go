package config

import (
	"bytes"
	"crypto/tls"
	"slices"
	"strings"
	"testing"
)

const tlsBase = `mode = "l7"
listen = "127.0.0.1:8443"

[[backend]]
id = "a"
address = "127.0.0.1:9001"
`

func TestTLSOffByDefault(t *testing.T) {
	c, err := Parse([]byte(tlsBase), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.On() || c.Cookie.Secure {
		t.Errorf("TLS on %v, cookie.secure %v without [tls]: want both false", c.TLS.On(), c.Cookie.Secure)
	}
	if c.TLS.MinVersion != "1.2" || len(c.TLS.ALPN) != 2 || c.TLS.ALPN[0] != "h2" || c.TLS.ALPN[1] != "http/1.1" {
		t.Errorf("tls defaults = %+v", c.TLS)
	}
	// Every key exchange crypto/tls offers by default, the post-quantum
	// hybrids included.
	wantCurves := []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}
	if got := c.TLS.CurveIDs(); !slices.Equal(got, wantCurves) {
		t.Errorf("tls.curves default = %v (%q), want %v", got, c.TLS.Curves, wantCurves)
	}
}

func TestTLSCurves(t *testing.T) {
	c, err := Parse([]byte(tlsBase+"\n[tls]\ncurves = [\"X25519\", \"P-256\"]\n"), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.TLS.CurveIDs(); !slices.Equal(got, []tls.CurveID{tls.X25519, tls.CurveP256}) {
		t.Errorf("curves = %v", got)
	}
	var out bytes.Buffer
	if err := c.Encode(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `curves        = ["X25519", "P-256"]`) {
		t.Errorf("encoded config lacks the curves:\n%s", out.String())
	}
	// Hybrids alone are fine when every client speaks TLS 1.3.
	if _, err := Parse([]byte(tlsBase+"\n[tls]\nmin_version = \"1.3\"\ncurves = [\"X25519MLKEM768\"]\n"), "t.toml"); err != nil {
		t.Errorf("hybrid only with TLS 1.3: %v", err)
	}
}

func TestTLSCertificatesAndSecureDefault(t *testing.T) {
	doc := tlsBase + `
[tls]
certificates = [ { cert = "/etc/a.pem", key = "/etc/a.key", ocsp = "/etc/a.ocsp" },
                 { cert = "/etc/b.pem", key = "/etc/b.key" } ]
min_version = "1.3"
redirect_http = "127.0.0.1:8081"
`
	c, err := Parse([]byte(doc), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Certificate{{Cert: "/etc/a.pem", Key: "/etc/a.key", OCSP: "/etc/a.ocsp"}, {Cert: "/etc/b.pem", Key: "/etc/b.key"}}
	if len(c.TLS.Certificates) != 2 || c.TLS.Certificates[0] != want[0] || c.TLS.Certificates[1] != want[1] {
		t.Errorf("certificates = %+v, want %+v", c.TLS.Certificates, want)
	}
	if !c.Cookie.Secure {
		t.Error("cookie.secure left out on a TLS listener: want true")
	}
	// SameSite=None is then fine without writing secure.
	if _, err := Parse([]byte(doc+"\n[cookie]\nsame_site = \"none\"\n"), "t.toml"); err != nil {
		t.Errorf("same_site none on TLS: %v", err)
	}
	// An explicit false stays false, and SameSite=None without Secure stays
	// an error.
	c2, err := Parse([]byte(doc+"\n[cookie]\nsecure = false\n"), "t.toml")
	if err != nil || c2.Cookie.Secure {
		t.Errorf("explicit secure = false: %v, secure %v", err, c2 != nil && c2.Cookie.Secure)
	}
	_, err = Parse([]byte(doc+"\n[cookie]\nsecure = false\nsame_site = \"none\"\n"), "t.toml")
	if err == nil || !strings.Contains(err.Error(), `cookie.same_site: "none" requires cookie.secure = true`) {
		t.Errorf("same_site none with secure false: %v", err)
	}

	// check prints it, and reads back the same.
	var out bytes.Buffer
	if err := c.Encode(&out); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		`certificates  = [{ cert = "/etc/a.pem", key = "/etc/a.key", ocsp = "/etc/a.ocsp" }, { cert = "/etc/b.pem", key = "/etc/b.key" }]`,
		`min_version   = "1.3"`, `alpn          = ["h2", "http/1.1"]`, `redirect_http = "127.0.0.1:8081"`,
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("encoded config lacks %q:\n%s", line, out.String())
		}
	}
	back, err := Parse(out.Bytes(), "check")
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	back.Encode(&again)
	if again.String() != out.String() {
		t.Errorf("round trip changed:\n%s\nwant\n%s", again.String(), out.String())
	}
}

func TestTLSRejects(t *testing.T) {
	tests := []struct{ name, table, want string }{
		{"min version", `certificates = [{cert = "a", key = "b"}]
min_version = "1.1"`, `t.toml:10: tls.min_version: "1.1" is not one of 1.2, 1.3`},
		{"alpn empty", `alpn = []`, `t.toml:9: tls.alpn: [] must list at least one protocol`},
		{"alpn unknown", `alpn = ["spdy/3"]`, `t.toml:9: tls.alpn: element 0: "spdy/3" is not a protocol lbctl serves`},
		{"alpn twice", `alpn = ["http/1.1", "http/1.1"]`, `t.toml:9: tls.alpn: element 1: "http/1.1" is listed twice`},
		{"alpn not strings", `alpn = [1]`, `t.toml:9: tls.alpn: element 0 is 1, not a string`},
		{"certificates not tables", `certificates = ["a.pem"]`, `t.toml:9: tls.certificates: element 0 is "a.pem"; each must be a table`},
		{"certificate unknown key", `certificates = [{cert = "a", key = "b", chain = "c"}]`, `t.toml:9: tls.certificates: element 0: chain: unknown key "chain" (cert, key and ocsp are)`},
		{"certificate ocsp not a string", `certificates = [{cert = "a", key = "b", ocsp = 1}]`, `t.toml:9: tls.certificates: element 0: ocsp: `},
		{"certificate without key", `certificates = [{cert = "a"}]`, `t.toml:9: tls.certificates[0].key: "" must be the path of a PEM key file`},
		{"curves empty", `curves = []`, `t.toml:9: tls.curves: [] must list at least one key exchange (X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P-256, P-384, P-521)`},
		{"curves unknown", `curves = ["X25519", "secp256k1"]`, `t.toml:9: tls.curves: element 1: "secp256k1" is not a key exchange lbctl offers`},
		{"curves twice", `curves = ["X25519", "X25519"]`, `t.toml:9: tls.curves: element 1: "X25519" is listed twice`},
		{"curves hybrid only with 1.2", `curves = ["X25519MLKEM768"]`, `t.toml:9: tls.curves: ["X25519MLKEM768"] holds only post-quantum hybrids, which TLS 1.2 clients cannot use`},
		{"redirect without tls", `redirect_http = "127.0.0.1:8081"`, `t.toml:9: tls.redirect_http: "127.0.0.1:8081" redirects to https, which needs tls.certificates`},
		{"redirect bad", `certificates = [{cert = "a", key = "b"}]
redirect_http = "nowhere"`, `t.toml:10: tls.redirect_http: "nowhere" has no port`},
		{"redirect is listen", `certificates = [{cert = "a", key = "b"}]
redirect_http = "127.0.0.1:8443"`, `t.toml:10: tls.redirect_http: "127.0.0.1:8443" is the TLS listen address itself`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tlsBase+"\n[tls]\n"+tt.table+"\n"), "t.toml")
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error = %v\nwant it to start with %s", err, tt.want)
			}
		})
	}
	_, err := Parse([]byte(strings.Replace(tlsBase, `"l7"`, `"l4"`, 1)+"\n[tls]\ncertificates = [{cert = \"a\", key = \"b\"}]\n"), "t.toml")
	if err == nil || !strings.Contains(err.Error(), `t.toml:9: tls.certificates: TLS termination needs mode = "l7" (mode is "l4")`) {
		t.Errorf("tls in l4: %v", err)
	}
}
