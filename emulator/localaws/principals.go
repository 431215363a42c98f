package localaws

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
)

// principal is a function's identity as AWS sees it: the access key it signs with and its role's policy.
type principal struct {
	Function    string // physical name
	AccessKeyID string
	Secret      string
	Policy      *Policy
}

// principals maps access key ids to the functions the emulator runs: the one place that knows which credentials
// each function was given, so the S3 gate and the data-plane endpoint authorise a request by its signer.
type principals struct {
	mu    sync.Mutex
	byKey map[string]*principal
}

// issue gives a function its own credentials (distinct access key id) and remembers its policy.
func (p *principals) issue(function string, policy *Policy) *principal {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byKey == nil {
		p.byKey = map[string]*principal{}
	}
	id := make([]byte, 8)
	secret := make([]byte, 20)
	_, _ = rand.Read(id)
	_, _ = rand.Read(secret)
	pr := &principal{Function: function, AccessKeyID: "AKIA" + strings.ToUpper(hex.EncodeToString(id)), Secret: hex.EncodeToString(secret), Policy: policy}
	p.byKey[pr.AccessKeyID] = pr
	return pr
}

func (p *principals) lookup(accessKeyID string) (*principal, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, ok := p.byKey[accessKeyID]
	return pr, ok
}
