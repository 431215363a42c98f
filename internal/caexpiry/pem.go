package caexpiry

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
)

func parsePEM(s string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}
