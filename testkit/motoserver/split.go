package motoserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// ServiceGroups are the moto processes of a split server, by name, and the services (SigV4 signing names) each
// serves; every other service goes to "main". AWS IoT's control plane and its data plane (shadows) share a process:
// moto's shadows live beside the things they belong to. The quota figures and the registry's change feed are the
// IoT process's.
var ServiceGroups = map[string][]string{
	"iot":      {"iot", "iotdata"},
	"sqs":      {"sqs"},
	"dynamodb": {"dynamodb"},
	"main":     nil,
}

// serviceEndpointVars are the SDKs' per-service endpoint variables (AWS_ENDPOINT_URL_<service id>) Env sets.
var serviceEndpointVars = []struct{ env, service string }{
	{"AWS_ENDPOINT_URL_IOT", "iot"},
	{"AWS_ENDPOINT_URL_IOT_DATA_PLANE", "iotdata"},
	{"AWS_ENDPOINT_URL_SQS", "sqs"},
	{"AWS_ENDPOINT_URL_DYNAMODB", "dynamodb"},
}

// groupOf is the group serving a SigV4 signing name.
func groupOf(service string) string {
	for g, services := range ServiceGroups {
		for _, s := range services {
			if s == service {
				return g
			}
		}
	}
	return "main"
}

// ServiceURL is the URL of the process serving a service (its SigV4 signing name: "iot", "iotdata", "sqs",
// "dynamodb", "s3", ...): URL when the server is one process.
func (s *Server) ServiceURL(service string) string {
	if s.groups == nil {
		return s.URL
	}
	return s.groups[groupOf(service)].URL
}

// Processes are the moto processes' ids by name ("moto" for one process; "moto-iot", "moto-sqs", ... when split).
func (s *Server) Processes() map[string]int {
	if s.groups == nil {
		return map[string]int{"moto": s.cmd.Process.Pid}
	}
	out := map[string]int{}
	for name, g := range s.groups {
		out["moto-"+name] = g.cmd.Process.Pid
	}
	return out
}

// startSplit starts one moto process per service group, at once, and the router in front of them.
func startSplit(ctx context.Context, opts Options) (*Server, error) {
	s := &Server{groups: map[string]*Server{}}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for name := range ServiceGroups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := startProcess(ctx, opts)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("moto %s: %w", name, err))
				return
			}
			s.groups[name] = g
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		s.stopSplit()
		return nil, errors.Join(errs...)
	}
	r, err := startRouter(s.groups)
	if err != nil {
		s.stopSplit()
		return nil, err
	}
	s.router, s.URL = r, r.url
	return s, nil
}

func (s *Server) stopSplit() {
	if s.router != nil {
		_ = s.router.srv.Close()
	}
	var wg sync.WaitGroup
	for _, g := range s.groups {
		wg.Add(1)
		go func() { defer wg.Done(); g.Stop() }()
	}
	wg.Wait()
}

// router serves a split server's one URL: an AWS request goes to the process of the service it is signed for;
// the launcher's control paths go to the process that owns them, or to every process (moto's reset, IAM principals),
// and the IAM counters are the sum of every process's.
type router struct {
	srv     *http.Server
	url     string
	groups  map[string]*Server
	proxies map[string]*httputil.ReverseProxy
}

var scopeService = regexp.MustCompile(`Credential=[^/,\s]+/[^/]+/[^/]+/([^/]+)/aws4_request`)

func startRouter(groups map[string]*Server) (*router, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("moto router: %w", err)
	}
	r := &router{url: "http://" + l.Addr().String(), groups: groups, proxies: map[string]*httputil.ReverseProxy{}}
	for name, g := range groups {
		u, _ := url.Parse(g.URL)
		p := httputil.NewSingleHostReverseProxy(u)
		p.Transport = controlClient.Transport
		r.proxies[name] = p
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = r.srv.Serve(l) }()
	return r, nil
}

func (r *router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	path := req.URL.Path
	switch {
	case path == "/moto-api/reset" || (strings.HasPrefix(path, iamControl) && req.Method != http.MethodGet):
		r.everyProcess(w, req)
	case strings.HasPrefix(path, iamControl+"stats"):
		r.iamStats(w, req)
	case strings.HasPrefix(path, "/_sphere/") || strings.HasPrefix(path, "/emulator-api/iot/"):
		r.proxies["iot"].ServeHTTP(w, req)
	default:
		m := scopeService.FindStringSubmatch(req.Header.Get("Authorization"))
		if m == nil {
			m = scopeService.FindStringSubmatch("Credential=" + req.URL.Query().Get("X-Amz-Credential"))
		}
		group := "main"
		if m != nil {
			group = groupOf(m[1])
		}
		r.proxies[group].ServeHTTP(w, req)
	}
}

// everyProcess sends the request to every process; the answer is the first failure, else the main process's.
func (r *router) everyProcess(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var answer *http.Response
	var answerBody []byte
	for _, name := range r.names() {
		out, err := http.NewRequestWithContext(req.Context(), req.Method, r.groups[name].URL+req.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = req.Header.Clone()
		resp, err := controlClient.Do(out)
		if err != nil {
			http.Error(w, fmt.Sprintf("moto %s: %v", name, err), http.StatusBadGateway)
			return
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if answer == nil || resp.StatusCode >= 300 && answer.StatusCode < 300 {
			answer, answerBody = resp, data
		}
	}
	for k, v := range answer.Header {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(answer.StatusCode)
	_, _ = w.Write(answerBody)
}

// iamStats answers the IAM counters of every process added up: numbers summed, lists joined, objects merged.
func (r *router) iamStats(w http.ResponseWriter, req *http.Request) {
	var total any
	for _, name := range r.names() {
		out, _ := http.NewRequestWithContext(req.Context(), req.Method, r.groups[name].URL+req.URL.RequestURI(), nil)
		resp, err := controlClient.Do(out)
		if err != nil {
			http.Error(w, fmt.Sprintf("moto %s: %v", name, err), http.StatusBadGateway)
			return
		}
		var v any
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			http.Error(w, fmt.Sprintf("moto %s: IAM stats: HTTP %d %v", name, resp.StatusCode, err), http.StatusBadGateway)
			return
		}
		total = mergeJSON(total, v)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(total)
}

func mergeJSON(a, b any) any {
	switch bv := b.(type) {
	case float64:
		av, _ := a.(float64)
		return av + bv
	case []any:
		av, _ := a.([]any)
		return append(av, bv...)
	case map[string]any:
		av, ok := a.(map[string]any)
		if !ok {
			av = map[string]any{}
		}
		for k, v := range bv {
			av[k] = mergeJSON(av[k], v)
		}
		return av
	default:
		if a == nil {
			return b
		}
		return a
	}
}

// names are the groups, main first (its answer is the one everyProcess gives when all succeed).
func (r *router) names() []string {
	names := make([]string, 0, len(r.groups))
	for n := range r.groups {
		if n != "main" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return append([]string{"main"}, names...)
}

// controlClient keeps its connections to the moto processes (the launcher's server keeps them alive).
var controlClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}}
