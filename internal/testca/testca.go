// Package testca is a throwaway certificate authority for tests: it issues
// ECDSA P-256 leaf certificates whose chain carries the CA, and signs OCSP
// responses about them, as a real CA's responder would, so that OCSP
// stapling can be tested on loopback.
package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/ocsp"
)

// CA is a certificate authority with its own key.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// New makes a CA valid from an hour ago for a day.
func New(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("test CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("test CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("test CA certificate: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// IssuePEM returns a leaf certificate for the DNS name followed by the
// CA's certificate, and the leaf's key, PEM-encoded. ocspSigning makes a
// certificate for an OCSP responder instead of a server.
func (ca *CA) IssuePEM(name string, ocspSigning bool) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("test leaf key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ocspSigning {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("test leaf certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("test leaf key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})...)
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// Issue is IssuePEM as a tls.Certificate, its Leaf set.
func (ca *CA) Issue(name string) (tls.Certificate, error) {
	c, k, err := ca.IssuePEM(name, false)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(c, k)
}

// Response is what an OCSP response says about a certificate.
type Response struct {
	Status     int // ocsp.Good, ocsp.Revoked or ocsp.Unknown
	ThisUpdate time.Time
	NextUpdate time.Time // zero: none given
	// Responder, when set, signs the response instead of the CA, and is
	// embedded in it, as a delegated responder's certificate is.
	Responder *tls.Certificate
}

// OCSP returns a DER OCSP response about leaf saying r, signed by the CA
// or by r.Responder.
func (ca *CA) OCSP(leaf *x509.Certificate, r Response) ([]byte, error) {
	tmpl := ocsp.Response{
		Status:       r.Status,
		SerialNumber: leaf.SerialNumber,
		ThisUpdate:   r.ThisUpdate,
		NextUpdate:   r.NextUpdate,
	}
	if r.Status == ocsp.Revoked {
		tmpl.RevokedAt = r.ThisUpdate.Add(-time.Minute)
	}
	responder, key := ca.Cert, crypto.Signer(ca.key)
	if r.Responder != nil {
		responder, key = r.Responder.Leaf, r.Responder.PrivateKey.(crypto.Signer)
		tmpl.Certificate = responder
	}
	der, err := ocsp.CreateResponse(ca.Cert, responder, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("test OCSP response: %w", err)
	}
	return der, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}
