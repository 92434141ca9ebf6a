package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/lbctl/lbctl/config"
	"github.com/lbctl/lbctl/internal/selfsigned"
)

// demoTLSListen is where `serve --demo --tls` accepts unless --listen says
// otherwise.
const demoTLSListen = "127.0.0.1:8443"

// demoTLS puts the demo behind TLS with a throwaway self-signed
// certificate for localhost and 127.0.0.1, written to a temporary
// directory that cleanup removes.
func demoTLS(cfg *config.Config, listen string) (cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "lbctl-demo-tls-")
	if err != nil {
		return nil, fmt.Errorf("demo certificate: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	certPEM, keyPEM, err := selfsigned.PEM("localhost", "127.0.0.1", "::1")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "demo.pem"), certPEM, 0o600)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "demo.key"), keyPEM, 0o600)
	}
	if err != nil {
		cleanup()
		return nil, fmt.Errorf("demo certificate: %w", err)
	}
	cfg.TLS.Certificates = []config.Certificate{{Cert: filepath.Join(dir, "demo.pem"), Key: filepath.Join(dir, "demo.key")}}
	cfg.Cookie.Secure = true
	if listen == "" {
		cfg.Listen = demoTLSListen
	}
	return cleanup, nil
}
