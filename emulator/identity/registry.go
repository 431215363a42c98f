// Package identity is the one registry of the identities of the functions the emulator runs: each deployed
// function gets one access key and secret, registered with moto's IAM layer (which authorizes the function's calls
// to moto against its role's policies) and looked up here by the endpoints the emulator serves itself (the S3 gate,
// the IoT data endpoint), which verify the caller's SigV4 signature (sigv4.go) and evaluate the same role.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
)

// Identity is a function as AWS sees it: the credentials it signs with, the role it runs as, and its role's
// statements as the emulator's own endpoints evaluate them.
type Identity struct {
	Function  string               // physical name
	Principal motoserver.Principal // access key, secret, role, session and policy documents, as moto enforces them
	Policy    *policy.Policy       // the role's statements in one document, as the S3 gate and the data plane evaluate them
}

// AccessKeyID is the access key the function signs with.
func (id *Identity) AccessKeyID() string { return id.Principal.AccessKeyID }

// Secret is the secret access key the function signs with.
func (id *Identity) Secret() string { return id.Principal.SecretAccessKey }

// Credentials returns the function's credentials for an SDK client (what Lambda does on the function's behalf:
// event source mappings poll, on-failure destinations receive, with the function's role).
func (id *Identity) Credentials() aws.CredentialsProvider { return id.Principal.Credentials() }

// Env returns the credential variables the function's process runs with.
func (id *Identity) Env() []string { return id.Principal.Env() }

// Registry maps access key ids to the functions the emulator runs.
type Registry struct {
	moto  *motoserver.Server
	mu    sync.Mutex
	byKey map[string]*Identity
}

// NewRegistry returns a registry that registers every identity with moto's IAM layer.
func NewRegistry(moto *motoserver.Server) *Registry {
	return &Registry{moto: moto, byKey: map[string]*Identity{}}
}

// Register gives a function its identity: p (from stacktemplate.FunctionPrincipal: its access key, role and
// policies) with a secret of its own, registered with moto, and pol for the emulator's endpoints.
func (r *Registry) Register(ctx context.Context, function string, p motoserver.Principal, pol *policy.Policy) (*Identity, error) {
	secret := make([]byte, 20)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("identity of %s: %w", function, err)
	}
	p.SecretAccessKey = hex.EncodeToString(secret)
	if err := r.moto.RegisterPrincipal(ctx, p); err != nil {
		return nil, err
	}
	id := &Identity{Function: function, Principal: p, Policy: pol}
	r.mu.Lock()
	r.byKey[p.AccessKeyID] = id
	r.mu.Unlock()
	return id, nil
}

// Lookup returns the identity that signs with accessKeyID.
func (r *Registry) Lookup(accessKeyID string) (*Identity, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.byKey[accessKeyID]
	return id, ok
}

// Authenticate returns the identity that signed r (SigV4 in its Authorization header, over body), as an AWS
// service endpoint other than S3 checks it.
func (r *Registry) Authenticate(req *http.Request, body []byte) (*Identity, error) {
	a, signed, err := ParseSigV4(req)
	if !signed || err != nil {
		return nil, fmt.Errorf("missing or malformed SigV4 authentication: %v", err)
	}
	id, ok := r.Lookup(a.AccessKeyID)
	if !ok {
		return nil, fmt.Errorf("unknown access key %s", a.AccessKeyID)
	}
	sum := sha256.Sum256(body)
	if err := a.Verify(req, id.Secret(), hex.EncodeToString(sum[:]), true); err != nil {
		return nil, err
	}
	return id, nil
}
