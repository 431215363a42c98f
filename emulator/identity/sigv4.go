package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// SigV4 is a request's Signature Version 4 authentication, from its query (a presigned URL) or its Authorization
// header, checked as AWS checks it. moto checks no signature at all, so the emulator does it where the product
// depends on it: a presigned URL is only as good as what it signs (the Content-Length of a PUT) and its expiry.
type SigV4 struct {
	AccessKeyID   string
	Date          time.Time
	Scope         string // date/region/service/aws4_request
	SignedHeaders []string
	Signature     string
	Expires       time.Duration // presigned only
	Presigned     bool
}

// errSignature is a signature that does not match the request (S3: SignatureDoesNotMatch).
var errSignature = errors.New("the request signature we calculated does not match the signature you provided")

const sigV4Time = "20060102T150405Z"

// SigV4Algorithm is the algorithm a SigV4 signature names (X-Amz-Algorithm, the Authorization header's scheme).
const SigV4Algorithm = "AWS4-HMAC-SHA256"

// ParseSigV4 reads the authentication of r; ok is false when r is not SigV4-signed at all.
func ParseSigV4(r *http.Request) (a SigV4, ok bool, err error) {
	q := r.URL.Query()
	var cred, date string
	if q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential") {
		a.Presigned, a.Signature = true, q.Get("X-Amz-Signature")
		if alg := q.Get("X-Amz-Algorithm"); alg != SigV4Algorithm {
			return a, true, fmt.Errorf("X-Amz-Algorithm %q: only %s is supported", alg, SigV4Algorithm)
		}
		cred, date = q.Get("X-Amz-Credential"), q.Get("X-Amz-Date")
		a.SignedHeaders = strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
		secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
		if err != nil || secs < 1 || secs > 7*24*3600 {
			return a, true, fmt.Errorf("X-Amz-Expires %q must be from 1 to 604800 seconds", q.Get("X-Amz-Expires"))
		}
		a.Expires = time.Duration(secs) * time.Second
	} else if h := r.Header.Get("Authorization"); strings.HasPrefix(h, SigV4Algorithm+" ") {
		var headers bool
		for _, part := range strings.Split(strings.TrimPrefix(h, SigV4Algorithm+" "), ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "Credential":
				cred = v
			case "SignedHeaders":
				a.SignedHeaders, headers = strings.Split(v, ";"), true
			case "Signature":
				a.Signature = v
			}
		}
		if cred == "" || !headers || a.Signature == "" {
			return a, true, errors.New("the authorization header requires three components: Credential, SignedHeaders, and Signature")
		}
		date = r.Header.Get("X-Amz-Date")
	} else {
		return a, false, nil
	}
	akid, scope, found := strings.Cut(cred, "/")
	if !found || strings.Count(scope, "/") != 3 || a.Signature == "" {
		return a, true, fmt.Errorf("malformed SigV4 credential %q", cred)
	}
	a.AccessKeyID, a.Scope = akid, scope
	if a.Date, err = time.Parse(sigV4Time, date); err != nil {
		return a, true, fmt.Errorf("X-Amz-Date %q: %w", date, err)
	}
	return a, true, nil
}

// Verify recomputes the signature of r with secret. payloadHash is UNSIGNED-PAYLOAD for presigned S3 requests or
// the hex SHA-256 of the body; doubleEscape is true for every service but S3 (its canonical URI escapes the path a
// second time).
func (a SigV4) Verify(r *http.Request, secret, payloadHash string, doubleEscape bool) error {
	path := r.URL.EscapedPath()
	if raw, _, _ := strings.Cut(r.RequestURI, "?"); raw != "" && !strings.Contains(raw, "://") {
		path = raw
	}
	if doubleEscape {
		path = escapeRFC3986(path, false)
	}
	q := r.URL.Query()
	q.Del("X-Amz-Signature")
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var query []string
	for _, k := range keys {
		vals := append([]string(nil), q[k]...)
		sort.Strings(vals)
		for _, v := range vals {
			query = append(query, escapeRFC3986(k, true)+"="+escapeRFC3986(v, true))
		}
	}
	var headers strings.Builder
	for _, h := range a.SignedHeaders {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = strconv.FormatInt(r.ContentLength, 10)
		default:
			v = strings.Join(strings.Fields(strings.Join(r.Header.Values(h), ",")), " ")
		}
		headers.WriteString(h + ":" + v + "\n")
	}
	canonical := strings.Join([]string{r.Method, path, strings.Join(query, "&"), headers.String(),
		strings.Join(a.SignedHeaders, ";"), payloadHash}, "\n")
	sum := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + a.Date.Format(sigV4Time) + "\n" + a.Scope + "\n" + hex.EncodeToString(sum[:])
	parts := strings.Split(a.Scope, "/")
	key := []byte("AWS4" + secret)
	for _, p := range parts {
		key = hmacSHA256(key, p)
	}
	if !hmac.Equal([]byte(hex.EncodeToString(hmacSHA256(key, toSign))), []byte(a.Signature)) {
		return errSignature
	}
	return nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// escapeRFC3986 percent-encodes everything but unreserved characters (and "/" unless encodeSlash), as SigV4 does.
func escapeRFC3986(s string, encodeSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
