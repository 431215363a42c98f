// Package testpki generates the certificates the tests and the local emulator need, at run time, so no private key is
// ever committed: a tenant-like CA (ECDSA P-384 as Azure Sphere uses), its proof-of-possession certificate,
// device certificates whose CN is a device ID, and TLS server certificates for loopback services. Leaves have
// P-256 keys: what Azure Sphere gives a device, and what AWS IoT's ATS endpoints present (Amazon Root CA 3 is
// P-256); a handshake on P-384 keys costs several times as much CPU, which a fleet simulated on one machine pays
// for every connection.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Pair is a certificate with its private key.
type Pair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// CertPEM returns the certificate in PEM form.
func (p *Pair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Cert.Raw})
}

// KeyPEM returns the private key in PKCS#8 PEM form.
func (p *Pair) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(p.Key)
	if err != nil {
		panic(err) // an ECDSA key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// ECKeyPEM returns the private key in SEC 1 ("EC PRIVATE KEY") form, which every TLS library reads.
func (p *Pair) ECKeyPEM() []byte {
	der, err := x509.MarshalECPrivateKey(p.Key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// WriteFiles writes base.pem (certificate), base.key (SEC 1 key) and base.der into dir.
func (p *Pair) WriteFiles(dir, base string) error {
	files := map[string][]byte{base + ".pem": p.CertPEM(), base + ".key": p.ECKeyPEM(), base + ".der": p.Cert.Raw}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// CAOptions shapes a generated CA. The zero value is a valid CA for the next two years.
type CAOptions struct {
	CommonName string
	NotBefore  time.Time
	NotAfter   time.Time
	NotCA      bool           // basicConstraints CA:FALSE, to test refusals
	Curve      elliptic.Curve // the CA's key; default P-384
}

// NewCA generates a self-signed tenant-like CA.
func NewCA(opts CAOptions) (*Pair, error) {
	if opts.CommonName == "" {
		opts.CommonName = "Test Azure Sphere Tenant CA"
	}
	if opts.NotBefore.IsZero() {
		opts.NotBefore = time.Now().Add(-time.Hour)
	}
	if opts.NotAfter.IsZero() {
		opts.NotAfter = opts.NotBefore.Add(2 * 365 * 24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: opts.CommonName, Organization: []string{"sphere-jitr test PKI"}},
		NotBefore:             opts.NotBefore,
		NotAfter:              opts.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  !opts.NotCA,
	}
	curve := opts.Curve
	if curve == nil {
		curve = elliptic.P384()
	}
	return issue(tmpl, nil, curve)
}

// LeafOptions shapes a certificate issued by a CA.
type LeafOptions struct {
	CommonName string
	NotBefore  time.Time
	NotAfter   time.Time
	DNSNames   []string
	IPs        []net.IP
	Server     bool
}

// Issue signs a leaf certificate with ca.
func (ca *Pair) Issue(opts LeafOptions) (*Pair, error) {
	if opts.NotBefore.IsZero() {
		opts.NotBefore = time.Now().Add(-time.Minute)
	}
	if opts.NotAfter.IsZero() {
		opts.NotAfter = opts.NotBefore.Add(48 * time.Hour)
	}
	usage := x509.ExtKeyUsageClientAuth
	if opts.Server {
		usage = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: opts.CommonName},
		NotBefore:             opts.NotBefore,
		NotAfter:              opts.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
		DNSNames:              opts.DNSNames,
		IPAddresses:           opts.IPs,
	}
	return issue(tmpl, ca, elliptic.P256())
}

// IssueDevice signs a device certificate whose CN is deviceID, valid from notBefore for a day, like the
// certificate Azure Sphere gives a device at each boot.
func (ca *Pair) IssueDevice(deviceID string, notBefore time.Time) (*Pair, error) {
	return ca.Issue(LeafOptions{CommonName: deviceID, NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour)})
}

// IssueVerification signs the proof-of-possession certificate whose CN is the AWS IoT registration code.
func (ca *Pair) IssueVerification(registrationCode string) (*Pair, error) {
	return ca.Issue(LeafOptions{CommonName: registrationCode, NotAfter: time.Now().Add(365 * 24 * time.Hour)})
}

// IssueServer signs a TLS server certificate for the given host names (IP literals become IP SANs).
func (ca *Pair) IssueServer(hosts ...string) (*Pair, error) {
	opts := LeafOptions{CommonName: hosts[0], Server: true, NotAfter: time.Now().Add(365 * 24 * time.Hour)}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			opts.IPs = append(opts.IPs, ip)
		} else {
			opts.DNSNames = append(opts.DNSNames, h)
		}
	}
	return ca.Issue(opts)
}

// RandomDeviceID returns a fresh 128-character device ID in upper case, as Azure Sphere prints them.
func RandomDeviceID() string {
	b := make([]byte, 64)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

func issue(tmpl *x509.Certificate, parent *Pair, curve elliptic.Curve) (*Pair, error) {
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl.SerialNumber = serial
	signerCert, signerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("sign %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", tmpl.Subject.CommonName, err)
	}
	return &Pair{Cert: cert, Key: key}, nil
}

// Load reads a CA that WriteFiles wrote: BASE.pem (certificate, PEM or DER) and BASE.key (SEC 1 or PKCS#8 ECDSA
// key, PEM).
func Load(base string) (*Pair, error) {
	certData, err := os.ReadFile(base + ".pem")
	if err != nil {
		return nil, fmt.Errorf("read tenant CA: %w (generate it with 'devicesim tenant-ca')", err)
	}
	der := certData
	if block, _ := pem.Decode(certData); block != nil {
		der = block.Bytes
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tenant CA %s.pem: %w", base, err)
	}
	keyData, err := os.ReadFile(base + ".key")
	if err != nil {
		return nil, fmt.Errorf("read tenant CA key: %w", err)
	}
	block, _ := pem.Decode(keyData)
	if block == nil {
		return nil, errors.New("tenant CA key: no PEM block")
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return &Pair{Cert: cert, Key: k}, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tenant CA key: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("tenant CA key is not ECDSA")
	}
	return &Pair{Cert: cert, Key: ec}, nil
}
