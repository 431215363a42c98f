package s3gate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/sphere-jitr/sphere-jitr/emulator/identity"
	"github.com/sphere-jitr/sphere-jitr/emulator/policy"
	"github.com/sphere-jitr/sphere-jitr/testkit/motoserver"
	"github.com/sphere-jitr/sphere-jitr/testkit/stacktemplate"
)

// BucketRules is what S3 checks about a bucket beyond the caller's identity: its bucket policy, its Object
// Ownership (BucketOwnerEnforced disables ACLs) and its Block Public Access settings. The zero value is not S3's
// default; defaultBucketRules is.
type BucketRules struct {
	Policy                []bucketStatement
	OwnerEnforced         bool // ObjectOwnership BucketOwnerEnforced: ACL headers refused
	BlockPublicAcls       bool // public ACLs refused (matters only when ACLs are enabled)
	RestrictPublicBuckets bool // a public bucket policy grants nothing to anonymous callers
}

// defaultBucketRules are those of a bucket created without settings (S3 since April 2023): ACLs disabled, every
// Block Public Access setting on, no bucket policy.
var defaultBucketRules = BucketRules{OwnerEnforced: true, BlockPublicAcls: true, RestrictPublicBuckets: true}

// bucketStatement is one statement of a bucket policy: whom it is about (Principal) and what (the statement
// without its Principal, evaluated as an identity policy statement).
type bucketStatement struct {
	Principals []string // "*" or AWS principal ARNs / account ids
	Statement  *policy.Policy
}

// ApplyTemplate gives the gate the rules of every AWS::S3::Bucket of the template, resolved with r (the
// deployment's resolver, which knows the buckets' physical names): ownership controls, public access block and the
// AWS::S3::BucketPolicy that names the bucket. Buckets the template does not declare keep S3's defaults.
func (g *S3Gate) ApplyTemplate(t *stacktemplate.Template, r *stacktemplate.Resolver) error {
	for _, id := range t.OfType("AWS::S3::Bucket") {
		name, err := r.String(map[string]any{"Ref": id})
		if err != nil {
			return fmt.Errorf("bucket %s: %w", id, err)
		}
		rules, err := bucketRulesFromTemplate(t, r, id)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", id, err)
		}
		g.mu.Lock()
		if g.buckets == nil {
			g.buckets = map[string]BucketRules{}
		}
		g.buckets[name] = rules
		g.mu.Unlock()
		g.timeline.Event("deploy", "S3 bucket %s: ACLs disabled %v, public ACLs blocked %v, bucket policy of %d statement(s); every request authenticated and authorized as S3 does",
			name, rules.OwnerEnforced, rules.BlockPublicAcls, len(rules.Policy))
	}
	return nil
}

func bucketRulesFromTemplate(t *stacktemplate.Template, r *stacktemplate.Resolver, id string) (BucketRules, error) {
	rules := defaultBucketRules
	if own, ok := t.Prop(id, "OwnershipControls.Rules").([]any); ok {
		for _, rule := range own {
			if m, ok := rule.(map[string]any); ok {
				rules.OwnerEnforced = m["ObjectOwnership"] == "BucketOwnerEnforced"
			}
		}
	}
	if pab, ok := t.Prop(id, "PublicAccessBlockConfiguration").(map[string]any); ok {
		rules.BlockPublicAcls = pab["BlockPublicAcls"] == true
		rules.RestrictPublicBuckets = pab["RestrictPublicBuckets"] == true
	}
	for _, pid := range t.OfType("AWS::S3::BucketPolicy") {
		if stacktemplate.ReferencedResource(t.Prop(pid, "Bucket")) != id {
			continue
		}
		doc, err := r.Resolve(t.Prop(pid, "PolicyDocument"))
		if err != nil {
			return rules, fmt.Errorf("bucket policy %s: %w", pid, err)
		}
		data, _ := json.Marshal(doc)
		stmts, err := parseBucketPolicy(data)
		if err != nil {
			return rules, fmt.Errorf("bucket policy %s: %w", pid, err)
		}
		rules.Policy = append(rules.Policy, stmts...)
	}
	return rules, nil
}

// parseBucketPolicy reads a bucket policy document: each statement's Principal, and the rest of it as an
// identity-policy statement.
func parseBucketPolicy(doc []byte) ([]bucketStatement, error) {
	var raw struct {
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("decode bucket policy: %w", err)
	}
	var stmts []map[string]any
	if err := json.Unmarshal(raw.Statement, &stmts); err != nil {
		var one map[string]any
		if err2 := json.Unmarshal(raw.Statement, &one); err2 != nil {
			return nil, fmt.Errorf("decode bucket policy statements: %w", err)
		}
		stmts = []map[string]any{one}
	}
	var out []bucketStatement
	for i, s := range stmts {
		if _, ok := s["NotPrincipal"]; ok {
			return nil, fmt.Errorf("statement %d: NotPrincipal is not supported by the emulator", i)
		}
		principals, err := bucketPrincipals(s["Principal"])
		if err != nil {
			return nil, fmt.Errorf("statement %d: principal: %w", i, err)
		}
		delete(s, "Principal")
		one, _ := json.Marshal(map[string]any{"Statement": []any{s}})
		p, err := policy.Parse(one)
		if err != nil {
			return nil, fmt.Errorf("statement %d: %w", i, err)
		}
		out = append(out, bucketStatement{Principals: principals, Statement: p})
	}
	return out, nil
}

// bucketPrincipals reads "*", {"AWS": ...} (a string or a list); service and canonical-user principals name no
// caller the gate serves, so they match nobody.
func bucketPrincipals(v any) ([]string, error) {
	switch p := v.(type) {
	case string:
		if p != "*" {
			return nil, fmt.Errorf("%q: a string principal must be \"*\"", p)
		}
		return []string{"*"}, nil
	case map[string]any:
		switch aws := p["AWS"].(type) {
		case nil:
			return nil, nil
		case string:
			return []string{aws}, nil
		case []any:
			out := make([]string, 0, len(aws))
			for _, a := range aws {
				s, ok := a.(string)
				if !ok {
					return nil, fmt.Errorf("AWS principal %v is not a string", a)
				}
				out = append(out, s)
			}
			return out, nil
		default:
			return nil, fmt.Errorf("AWS principal %v is neither a string nor a list", aws)
		}
	default:
		return nil, fmt.Errorf("%v is neither \"*\" nor an object", v)
	}
}

// s3Caller is who signed a request, as S3 sees it.
type s3Caller struct {
	Anonymous bool
	Admin     bool               // the emulator's own key (motoserver.AccessKeyID): the account's root user
	Function  *identity.Identity // a function the emulator runs, with its role policy
}

func (c s3Caller) arn() string {
	switch {
	case c.Admin:
		return "arn:aws:iam::" + motoserver.AccountID + ":root"
	case c.Function != nil:
		return c.Function.Function
	}
	return "anonymous"
}

func (st bucketStatement) names(c s3Caller) bool {
	for _, p := range st.Principals {
		switch {
		case p == "*":
			return true
		case c.Admin && (p == motoserver.AccountID || p == c.arn()):
			return true
		}
	}
	return false
}

// authorize decides as S3 does for a caller of the bucket owner's account: an explicit Deny in the bucket policy
// wins; otherwise the root user may do anything, a function what its role policy or the bucket policy allows, and
// an anonymous caller only what a bucket policy statement for Principal "*" allows (and nothing when
// RestrictPublicBuckets is on, since such a policy is public).
func (b BucketRules) authorize(c s3Caller, action, resource string) *s3Refusal {
	req := policy.Request{Action: action, Resource: resource, Vars: map[string]string{"aws:SecureTransport": "true"}}
	allowed := c.Admin || (c.Function != nil && policy.Allowed(req, c.Function.Policy))
	for _, st := range b.Policy {
		if !st.names(c) {
			continue
		}
		if denies(req, st.Statement) {
			return accessDenied(c, action, resource, "an explicit deny in the bucket policy")
		}
		if policy.Allowed(req, st.Statement) && !(c.Anonymous && b.RestrictPublicBuckets) {
			allowed = true
		}
	}
	if !allowed {
		if c.Anonymous {
			return &s3Refusal{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Access Denied"}
		}
		return accessDenied(c, action, resource, "no identity-based or bucket policy allows it")
	}
	return nil
}

// denies reports whether a Deny statement of p matches req.
func denies(req policy.Request, p *policy.Policy) bool {
	for _, st := range p.Statements {
		if !st.Allow && policy.Allowed(req, &policy.Policy{Statements: []policy.Statement{{Allow: true, Actions: st.Actions, Resources: st.Resources, Conditions: st.Conditions}}}) {
			return true
		}
	}
	return false
}

func accessDenied(c s3Caller, action, resource, why string) *s3Refusal {
	return &s3Refusal{Status: http.StatusForbidden, Code: "AccessDenied",
		Message: fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %q because %s", c.arn(), action, resource, why)}
}

// aclHeaders are the request headers that set an ACL on the bucket or object.
var aclHeaders = []string{"X-Amz-Acl", "X-Amz-Grant-Read", "X-Amz-Grant-Write", "X-Amz-Grant-Read-Acp", "X-Amz-Grant-Write-Acp", "X-Amz-Grant-Full-Control"}

// checkACL refuses what S3 refuses about ACLs: with ACLs disabled (BucketOwnerEnforced) any ACL but
// bucket-owner-full-control, in a header or through PUT ?acl, is 400 AccessControlListNotSupported; with ACLs
// enabled and BlockPublicAcls on, a public canned ACL or a grant to everyone is 403 AccessDenied.
func (b BucketRules) checkACL(r *http.Request) *s3Refusal {
	var set []string
	for _, h := range aclHeaders {
		if v := r.Header.Get(h); v != "" && !(h == "X-Amz-Acl" && v == "bucket-owner-full-control") {
			set = append(set, h+": "+v)
		}
	}
	_, aclSub := r.URL.Query()["acl"]
	if r.Method == http.MethodPut && aclSub {
		set = append(set, "PUT ?acl")
	}
	if len(set) == 0 {
		return nil
	}
	if b.OwnerEnforced {
		return &s3Refusal{Status: http.StatusBadRequest, Code: "AccessControlListNotSupported", Message: "The bucket does not allow ACLs"}
	}
	public := map[string]bool{"public-read": true, "public-read-write": true, "authenticated-read": true}
	for _, h := range aclHeaders {
		v := r.Header.Get(h)
		if (h == "X-Amz-Acl" && public[v]) || strings.Contains(v, "acs.amazonaws.com/groups/global/") {
			if b.BlockPublicAcls {
				return &s3Refusal{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Access Denied (Block Public Access refuses public ACLs)"}
			}
		}
	}
	return nil
}

// bucketSubresources are the bucket configurations S3 authorizes by their own actions: GET, PUT, DELETE.
var bucketSubresources = map[string][3]string{
	"policy":            {"GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"},
	"policyStatus":      {"GetBucketPolicyStatus", "GetBucketPolicyStatus", "GetBucketPolicyStatus"},
	"cors":              {"GetBucketCORS", "PutBucketCORS", "PutBucketCORS"},
	"lifecycle":         {"GetLifecycleConfiguration", "PutLifecycleConfiguration", "PutLifecycleConfiguration"},
	"tagging":           {"GetBucketTagging", "PutBucketTagging", "PutBucketTagging"},
	"ownershipControls": {"GetBucketOwnershipControls", "PutBucketOwnershipControls", "PutBucketOwnershipControls"},
	"publicAccessBlock": {"GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock", "PutBucketPublicAccessBlock"},
	"encryption":        {"GetEncryptionConfiguration", "PutEncryptionConfiguration", "PutEncryptionConfiguration"},
	"versioning":        {"GetBucketVersioning", "PutBucketVersioning", "PutBucketVersioning"},
	"notification":      {"GetBucketNotification", "PutBucketNotification", "PutBucketNotification"},
	"logging":           {"GetBucketLogging", "PutBucketLogging", "PutBucketLogging"},
	"website":           {"GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"},
}

// s3Operation names the bucket, the IAM action and the resource ARN of a path-style request, as S3 authorizes it.
func s3Operation(r *http.Request) (bucket, action, resource string) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, isObject := strings.Cut(path, "/")
	isObject = isObject && key != ""
	q := r.URL.Query()
	has := func(k string) bool { _, ok := q[k]; return ok }
	if bucket == "" {
		return "", "s3:ListAllMyBuckets", "*"
	}
	if isObject {
		resource = "arn:aws:s3:::" + bucket + "/" + key
		switch {
		case has("acl"):
			action = map[bool]string{true: "s3:PutObjectAcl", false: "s3:GetObjectAcl"}[r.Method == http.MethodPut]
		case has("tagging"):
			action = map[string]string{http.MethodPut: "s3:PutObjectTagging", http.MethodDelete: "s3:DeleteObjectTagging"}[r.Method]
			if action == "" {
				action = "s3:GetObjectTagging"
			}
		case r.Method == http.MethodGet && has("uploadId"):
			action = "s3:ListMultipartUploadParts"
		case r.Method == http.MethodDelete && has("uploadId"):
			action = "s3:AbortMultipartUpload"
		case r.Method == http.MethodGet || r.Method == http.MethodHead:
			action = "s3:GetObject"
		case r.Method == http.MethodPut || r.Method == http.MethodPost:
			action = "s3:PutObject"
		case r.Method == http.MethodDelete:
			action = "s3:DeleteObject"
		default:
			action = "s3:" + r.Method + "Object"
		}
		return bucket, action, resource
	}
	resource = "arn:aws:s3:::" + bucket
	for sub, actions := range bucketSubresources {
		if has(sub) {
			i := map[string]int{http.MethodPut: 1, http.MethodDelete: 2}[r.Method]
			return bucket, "s3:" + actions[i], resource
		}
	}
	switch {
	case r.Method == http.MethodPost && has("delete"):
		return bucket, "s3:DeleteObject", resource + "/*"
	case has("acl"):
		action = map[bool]string{true: "s3:PutBucketAcl", false: "s3:GetBucketAcl"}[r.Method == http.MethodPut]
	case has("location"):
		action = "s3:GetBucketLocation"
	case has("versions"):
		action = "s3:ListBucketVersions"
	case has("uploads"):
		action = "s3:ListBucketMultipartUploads"
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		action = "s3:ListBucket"
	case r.Method == http.MethodPut:
		action = "s3:CreateBucket"
	case r.Method == http.MethodDelete:
		action = "s3:DeleteBucket"
	default:
		action = "s3:" + r.Method + "Bucket"
	}
	return bucket, action, resource
}
