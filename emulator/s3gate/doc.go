// Package s3gate is the emulator's S3 endpoint: it stands in front of moto's S3 and enforces what S3 enforces
// and moto does not, authenticating each request by the SigV4 signature of a function's identity
// (emulator/identity) and authorizing it against that function's role.
package s3gate
